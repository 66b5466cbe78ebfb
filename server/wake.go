package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/deviceapi"
)

// The wake-up channel (docs/wake.md): GET /v1/devices/<id>/wake holds an
// HTTPS response open as a server-sent event stream that says only "the
// repository's timestamp.json changed" (its ETag), so a device polls at
// once instead of at its next poll. It carries nothing a device installs:
// the device then polls timestamp.json and verifies everything with TUF as
// always, and a device whose channel is down polls at its normal interval.
//
// Who may call it: an enrolled device, for its own id only, authenticated
// as for status reports (mutual TLS with its identity key, whose hash is
// the id and which is bound to it in the fleet database; an unknown device
// with a valid join token joins). The stream itself carries nothing
// secret, but a held connection costs the server a socket and memory, so
// only devices of an organization may hold one, and the caps are explicit:
//
//   - one stream per device: a new one replaces the device's older one,
//     which ends (a device that rebooted or lost its NAT mapping comes
//     back at once, and one device cannot hold many);
//   - WakeOptions.MaxHeld in all and MaxHeldPerOrg per organization: past
//     either the answer is 503 with Retry-After, and the device polls;
//   - a stream whose device is gone ends within Heartbeat + Timeout: each
//     write must be taken within Timeout (write deadline) and acknowledged
//     by the device's TCP within Timeout (TCP_USER_TIMEOUT), so a device
//     that vanished without closing (power cut, a NAT that forgot it)
//     frees its slot. The device sends nothing after its request; it is
//     the heartbeat that proves the peer.

// WakeOptions tune the wake-up channel; the zero value takes the defaults.
type WakeOptions struct {
	// MaxHeld caps the held wake connections of the whole server
	// (default 20,000); MaxHeldPerOrg those of one organization (default
	// 10,000). Every held connection is one file descriptor.
	MaxHeld, MaxHeldPerOrg int
	// Heartbeat is the time between two keep-alive comments on an idle
	// stream (default 4 min: under the idle timeouts of common NATs and
	// load balancers, 4-5 min). Devices reconnect after 2 heartbeats of
	// silence.
	Heartbeat time.Duration
	// Timeout bounds how long a write to a held stream may block or stay
	// unacknowledged by the device before the stream is dropped (default
	// 1 min).
	Timeout time.Duration
	// Check is how often the server looks at timestamp.json for a change
	// (default 1 s: one stat; the file is hashed only when it changed).
	Check time.Duration
	// Rate paces the nudges after a change, in devices per second
	// (default 500): each held stream hears of the change after a random
	// delay in [0, held/Rate), so the polls that follow do not all arrive
	// at once. 10,000 devices polling at the same instant overran this
	// 2-core machine (docs/wake.md); 500 resumed-TLS polls a second is
	// what one core of plumb serve answers with room to spare.
	Rate float64
}

// Defaults of WakeOptions.
const (
	DefaultWakeMaxHeld       = 20000
	DefaultWakeMaxHeldPerOrg = 10000
	DefaultWakeHeartbeat     = 4 * time.Minute
	DefaultWakeTimeout       = time.Minute
	DefaultWakeCheck         = time.Second
	DefaultWakeRate          = 500.0
)

// WakeEvent is the event name of a timestamp change; its data is the
// ETag timestamp.json has now (the one a conditional GET would return).
const WakeEvent = deviceapi.WakeEvent

// wakeHub follows timestamp.json and counts the held streams.
type wakeHub struct {
	o    WakeOptions
	s    *Server
	stop chan struct{} // closed by Server.Close and Serve's shutdown
	once sync.Once

	mu      sync.Mutex
	tag     string        // timestamp.json's ETag; "" when unreadable
	changed chan struct{} // closed (and replaced) when tag changes
	held    int
	perOrg  map[string]int
	devices map[string]*holder // the stream each device holds
}

// holder is one held stream: kick ends it (a newer stream of the same
// device replaced it), and then its slot belongs to the newer one.
type holder struct {
	org      string
	kick     chan struct{}
	replaced bool
}

func newWakeHub(s *Server, o WakeOptions) *wakeHub {
	o.MaxHeld = cmp.Or(o.MaxHeld, DefaultWakeMaxHeld)
	o.MaxHeldPerOrg = cmp.Or(o.MaxHeldPerOrg, DefaultWakeMaxHeldPerOrg)
	o.Heartbeat = cmp.Or(o.Heartbeat, DefaultWakeHeartbeat)
	o.Timeout = cmp.Or(o.Timeout, DefaultWakeTimeout)
	o.Check = cmp.Or(o.Check, DefaultWakeCheck)
	o.Rate = cmp.Or(o.Rate, DefaultWakeRate)
	h := &wakeHub{o: o, s: s, stop: make(chan struct{}), changed: make(chan struct{}), perOrg: map[string]int{}, devices: map[string]*holder{}}
	h.tag = s.timestampETag()
	go h.watch()
	return h
}

// close ends the watcher and every held stream (idempotent).
func (h *wakeHub) close() { h.once.Do(func() { close(h.stop) }) }

// watch looks at timestamp.json every Check until close.
func (h *wakeHub) watch() {
	t := time.NewTicker(h.o.Check)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		tag := h.s.timestampETag()
		h.mu.Lock()
		if tag != "" && tag != h.tag {
			h.tag = tag
			close(h.changed)
			h.changed = make(chan struct{})
			h.s.log.Info("timestamp changed: waking held devices", "etag", tag, "held", h.held)
		}
		h.mu.Unlock()
	}
}

// current returns the ETag and a channel closed at the next change.
func (h *wakeHub) current() (string, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tag, h.changed
}

// delay is a held stream's random wait before it passes a change on.
func (h *wakeHub) delay() time.Duration {
	h.mu.Lock()
	spread := time.Duration(float64(h.held) / h.o.Rate * float64(time.Second))
	h.mu.Unlock()
	if spread <= 0 {
		return 0
	}
	return rand.N(spread)
}

// acquire counts a held stream of device id in org, or reports which cap
// refuses it. A device's earlier stream is kicked and its slot passes to
// the new one.
func (h *wakeHub) acquire(org, id string) (hd *holder, limit string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hd = &holder{org: org, kick: make(chan struct{})}
	if old := h.devices[id]; old != nil {
		old.replaced = true
		close(old.kick)
		if h.perOrg[old.org]--; h.perOrg[old.org] <= 0 {
			delete(h.perOrg, old.org)
		}
		h.perOrg[org]++
		h.devices[id] = hd
		return hd, ""
	}
	switch {
	case h.held >= h.o.MaxHeld:
		return nil, "the server's"
	case h.perOrg[org] >= h.o.MaxHeldPerOrg:
		return nil, "the organization's"
	}
	h.held++
	h.perOrg[org]++
	h.devices[id] = hd
	return hd, ""
}

// release frees hd's slot, unless a newer stream of the device took it.
func (h *wakeHub) release(id string, hd *holder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd.replaced {
		return
	}
	delete(h.devices, id)
	h.held--
	if h.perOrg[hd.org]--; h.perOrg[hd.org] <= 0 {
		delete(h.perOrg, hd.org)
	}
}

// Held returns the number of wake streams held now (0 without the fleet
// service).
func (s *Server) Held() int {
	if s.wake == nil {
		return 0
	}
	s.wake.mu.Lock()
	defer s.wake.mu.Unlock()
	return s.wake.held
}

// timestampETag is metadata/timestamp.json's ETag as serveFile sends it;
// "" when it cannot be read.
func (s *Server) timestampETag() string {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return ""
	}
	defer root.Close()
	const rel = "metadata/timestamp.json"
	f, err := root.Open(rel)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	tag, err := s.etags.contentETag(rel, f, fi)
	if err != nil {
		return ""
	}
	return tag
}

// wakeStream answers GET /v1/devices/<id>/wake.
func (f *fleet) wakeStream(w http.ResponseWriter, r *http.Request, h *wakeHub, id string) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, r, http.MethodGet)
	}
	if !deviceIDRE.MatchString(id) {
		return errorf(http.StatusBadRequest, "device id: expected 1-64 of a-z 0-9 -, got %q", truncate(id, 40))
	}
	d, err := f.authDevice(r, id)
	if err != nil {
		return err
	}
	hd, which := h.acquire(d.OrgID, id)
	if hd == nil {
		w.Header().Set("Retry-After", "600")
		return errorf(http.StatusServiceUnavailable, "wake channel: %s cap on held connections is reached: poll instead", which)
	}
	defer h.release(id, hd)
	// net/http clears the ReadTimeout deadline once a request without a
	// body is read, so the stream outlives it (TestWakeServe).
	rc := http.NewResponseController(w)
	userTimeout(r.Context(), h.o.Timeout)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(h.o.Timeout))
		_, err := w.Write(b)
		return err == nil && rc.Flush() == nil
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	beat := time.NewTicker(h.o.Heartbeat)
	defer beat.Stop()
	sent := ""
	for {
		tag, changed := h.current()
		if tag != sent {
			if !write([]byte("event: " + WakeEvent + "\ndata: " + tag + "\n\n")) {
				return nil
			}
			sent = tag
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-h.stop:
			return nil
		case <-hd.kick:
			return nil
		case <-changed:
			t := time.NewTimer(h.delay())
			select {
			case <-r.Context().Done():
				t.Stop()
				return nil
			case <-h.stop:
				t.Stop()
				return nil
			case <-hd.kick:
				t.Stop()
				return nil
			case <-t.C:
			}
		case <-beat.C:
			// A comment line: the smallest write that keeps NAT
			// mappings and tells both ends the other is there.
			if !write([]byte(":\n")) {
				return nil
			}
		}
	}
}

// connKey is the context key of the request's connection (Serve's
// ConnContext).
type connKey struct{}

// userTimeout sets TCP_USER_TIMEOUT on the request's TCP connection, when
// Serve put it in ctx: data unacknowledged for d aborts the connection,
// which ends the request's context. Without it, Linux retransmits to a
// vanished peer for about 15 minutes.
func userTimeout(ctx context.Context, d time.Duration) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}

// noKeepAliveListener turns TCP keep-alive probes off on accepted
// connections. Go's default sends one every 15 s on an idle connection,
// which on a held wake stream costs more bytes than its heartbeat
// (docs/wake.md); requests are bounded by ReadTimeout and IdleTimeout, and
// held streams by their heartbeat.
type noKeepAliveListener struct{ net.Listener }

func (l noKeepAliveListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAlive(false)
	}
	return c, err
}

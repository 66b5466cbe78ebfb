// Package wake is the device side of the optional wake-up channel
// (docs/wake.md): one held HTTPS request to the fleet service,
// GET <report>/v1/devices/<id>/wake, answered as a server-sent event stream
// whose only news is "the repository's timestamp.json changed". A nudge
// makes the agent poll at once; it installs nothing itself: the poll and
// TUF verification stay the only way in, and while the channel is down the
// agent polls at its normal interval.
//
// New checks the options; Run holds the channel until its context ends,
// reconnecting with jittered exponential backoff; C delivers the nudges,
// Up says whether the channel is connected and Status what `plumbd status`
// shows of it (also written to Options.StatusFile at each change). C, Up
// and Status are safe for concurrent use with Run.
package wake

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Event is the event name the server sends when timestamp.json changed;
// its data is the file's new ETag.
const Event = deviceapi.WakeEvent

// URL is the wake-up stream of device id at the fleet service's base URL.
func URL(base, id string) string {
	return strings.TrimRight(base, "/") + "/" + deviceapi.WakePath(id)
}

// maxLine caps one line of the stream: an event line is a few dozen bytes.
const maxLine = 1024

// doer is satisfied by *http.Client.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Options configure a Channel.
type Options struct {
	// URL is the stream, <report base>/v1/devices/<id>/wake.
	URL string
	// Client is the device's mutual-TLS client for the fleet service
	// (report.DeviceClient). Its transport should not send TCP keep-alive
	// probes (see Transport): the heartbeat keeps the NAT mapping.
	Client doer
	// Heartbeat is the server's heartbeat interval; the channel counts as
	// dead after two of them without a byte, plus 30 s. Default 4 min.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait before reconnecting
	// (defaults 30 s and 10 min): each wait is drawn at random in
	// [0, bound) ("full jitter"), the bound doubling after each failure,
	// so a fleet cut off at once (a server restart) comes back spread
	// over 30 s, not in the same second (docs/wake.md measured both).
	MinBackoff, MaxBackoff time.Duration
	// Log receives connects and drops; nil discards.
	Log *slog.Logger
	// StatusFile, when set, receives the channel's Status (JSON) at each
	// change: connected, down (and why), a wake-up. That is a few writes
	// an hour at most: reconnects are spaced by the backoff.
	StatusFile string
}

// Channel is one device's wake-up channel.
type Channel struct {
	o    Options
	c    chan struct{}
	up   atomic.Bool
	last string // the ETag seen last; Run's goroutine only

	mu sync.Mutex
	st deviceapi.WakeStatus
}

// New checks o.
func New(o Options) (*Channel, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("wake channel: URL: expected an https:// URL, got %q", o.URL)
	}
	if o.Client == nil {
		return nil, errors.New("wake channel: no HTTP client: expected the device's mutual-TLS client")
	}
	o.Heartbeat = cmp.Or(o.Heartbeat, 4*time.Minute)
	o.MinBackoff = cmp.Or(o.MinBackoff, 30*time.Second)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, 10*time.Minute)
	if o.Heartbeat < 0 || o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		return nil, fmt.Errorf("wake channel: expected positive durations and MinBackoff <= MaxBackoff, got heartbeat %s, backoff %s..%s", o.Heartbeat, o.MinBackoff, o.MaxBackoff)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	st := deviceapi.WakeStatus{State: deviceapi.WakeDown, Since: time.Now().UTC(), Error: "not connected yet"}
	return &Channel{o: o, c: make(chan struct{}, 1), st: st}, nil
}

// Status returns the channel's state now.
func (c *Channel) Status() deviceapi.WakeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// update changes the status with f and writes it to StatusFile (best
// effort: it is a report; a failure is logged).
func (c *Channel) update(f func(*deviceapi.WakeStatus)) {
	c.mu.Lock()
	f(&c.st)
	st := c.st
	c.mu.Unlock()
	if c.o.StatusFile == "" {
		return
	}
	b, _ := json.Marshal(st)
	if err := atomicfile.WriteFile(c.o.StatusFile, append(b, '\n'), 0o600); err != nil {
		c.o.Log.Warn("wake channel status not written", "err", err)
	}
}

// setState records a change to state (connected or down, with why).
func (c *Channel) setState(state, why string) {
	c.update(func(st *deviceapi.WakeStatus) {
		if st.State != state {
			st.State, st.Since = state, time.Now().UTC()
		}
		st.Error = why
	})
}

// C receives a value when the repository's timestamp changed since the
// channel last heard of it. Nudges that arrive while one is pending merge.
func (c *Channel) C() <-chan struct{} { return c.c }

// Up reports whether the stream is connected now.
func (c *Channel) Up() bool { return c.up.Load() }

// Run holds the channel until ctx ends.
func (c *Channel) Run(ctx context.Context) {
	c.update(func(*deviceapi.WakeStatus) {}) // down, not connected yet
	bound := c.o.MinBackoff
	for ctx.Err() == nil {
		heard, err := c.hold(ctx)
		if ctx.Err() != nil {
			c.setState(deviceapi.WakeDown, "plumbd stopped")
			c.up.Store(false)
			return
		}
		c.setState(deviceapi.WakeDown, err.Error())
		c.up.Store(false)
		if heard {
			bound = c.o.MinBackoff // it worked for a while: start over
		}
		wait := rand.N(bound + 1)
		var ra *retryAfter
		if errors.As(err, &ra) {
			wait = max(wait, ra.d)
		}
		c.o.Log.Info("wake channel down, polling meanwhile", "err", err, "retry_in", wait.Round(time.Second))
		bound = min(bound*2, c.o.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// retryAfter is a refusal that says when to come back (503 at a cap).
type retryAfter struct {
	d   time.Duration
	msg string
}

func (e *retryAfter) Error() string { return e.msg }

// hold makes one request and reads its stream until it ends. heard
// reports whether an event arrived.
func (c *Channel) hold(ctx context.Context) (heard bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.o.URL, nil)
	if err != nil {
		return false, err
	}
	req.Header["User-Agent"] = []string{""}
	req.Header.Set("Accept", "text/event-stream")
	// Silence for two heartbeats means the connection is gone (a NAT
	// dropped it without a reset): cancel and reconnect.
	idle := 2*c.o.Heartbeat + 30*time.Second
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("wake channel: %s", resp.Status)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return false, &retryAfter{d: time.Duration(s) * time.Second, msg: msg}
		}
		return false, errors.New(msg)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("wake channel: expected Content-Type text/event-stream, got %q", ct)
	}
	c.setState(deviceapi.WakeConnected, "") // before Up: Up implies the file says so
	c.up.Store(true)
	c.o.Log.Info("wake channel up", "url", c.o.URL)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 256), maxLine)
	event := ""
	for sc.Scan() {
		watchdog.Reset(idle)
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:") && event == Event:
			heard = true
			c.seen(strings.TrimSpace(line[len("data:"):]))
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return heard, fmt.Errorf("wake channel: reading the stream: %w", err)
	}
	return heard, errors.New("wake channel: the server ended the stream")
}

// seen handles one timestamp ETag: a change from the last one this
// process heard nudges the agent. The first ever is not a change: the
// agent polls when it starts anyway. A reconnect (after a server restart)
// sends the current ETag again, and nudges only if it changed meanwhile.
func (c *Channel) seen(tag string) {
	prev := c.last
	c.last = tag
	if prev == "" || prev == tag {
		return
	}
	c.o.Log.Info("wake-up: the repository's timestamp changed", "etag", tag)
	c.update(func(st *deviceapi.WakeStatus) { st.LastWake = time.Now().UTC() })
	select {
	case c.c <- struct{}{}:
	default: // one is pending already
	}
}

// Transport returns a copy of tr for the channel: its own connections,
// and no TCP keep-alive probes (Go sends one every 15-30 s on an idle
// connection; the server's heartbeat, every few minutes, is what keeps
// the NAT mapping, at a fraction of the bytes: docs/wake.md).
func Transport(tr *http.Transport) *http.Transport {
	out := tr.Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}
	out.DialContext = d.DialContext
	out.MaxIdleConns, out.MaxIdleConnsPerHost = 1, 1
	return out
}

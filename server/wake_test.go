package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// wakeServer is newFleetServer with wake options.
func wakeServer(t *testing.T, wo WakeOptions) *fleetServer {
	t.Helper()
	return startFleetServer(t, Options{Dir: makeRepo(t).dir, CertDir: filepath.Join(t.TempDir(), "tls"), Fleet: &FleetOptions{Bootstrap: true}, Wake: wo})
}

// stream is an open wake stream.
type stream struct {
	resp *http.Response
	sc   *bufio.Scanner
}

// openWake opens d's wake stream as id and returns it, or the status and
// body of a refusal.
func openWake(t *testing.T, base string, hc *http.Client, id string) (*stream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/devices/"+id+"/wake", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return nil, resp.StatusCode, b.String()
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	return &stream{resp: resp, sc: bufio.NewScanner(resp.Body)}, http.StatusOK, ""
}

// next returns the data of the next timestamp event, skipping comments.
func (s *stream) next(t *testing.T) string {
	t.Helper()
	event := ""
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == WakeEvent:
			return strings.TrimPrefix(line, "data: ")
		}
	}
	t.Fatalf("wake stream ended: %v", s.sc.Err())
	return ""
}

// TestWakeStream: an enrolled device's stream says the current
// timestamp.json ETag at once and the new one after a publish: the one a
// conditional GET then returns.
func TestWakeStream(t *testing.T) {
	fs := wakeServer(t, WakeOptions{Check: 10 * time.Millisecond})
	d := fs.device(fs.join)
	s, code, body := openWake(t, fs.hs.URL, d.hc, d.id.ID)
	if code != http.StatusOK {
		t.Fatalf("wake: %d %s", code, body)
	}
	first := s.next(t)
	resp, _ := do(t, fs.hs.Client(), http.MethodGet, fs.hs.URL+"/metadata/timestamp.json", nil)
	if got := resp.Header.Get("ETag"); got != first {
		t.Errorf("first event = %s, want timestamp.json's ETag %s", first, got)
	}
	// A publish replaces timestamp.json (write a temp file, rename).
	ts := filepath.Join(fs.dir, "repository", "metadata", "timestamp.json")
	tmp := filepath.Join(fs.dir, "repository", "metadata", ".timestamp.tmp")
	if err := os.WriteFile(tmp, []byte(`{"signed":{"_type":"timestamp","version":8},"signatures":[]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, ts); err != nil {
		t.Fatal(err)
	}
	second := s.next(t)
	resp, _ = do(t, fs.hs.Client(), http.MethodGet, fs.hs.URL+"/metadata/timestamp.json", map[string]string{"If-None-Match": first})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != second || second == first {
		t.Errorf("after a publish: event %s (was %s), GET answers %d with ETag %s", second, first, resp.StatusCode, resp.Header.Get("ETag"))
	}
	if n := fs.srv.Held(); n != 1 {
		t.Errorf("Held() = %d, want 1", n)
	}
}

// TestWakeRefused: who may not hold a stream, and the caps.
func TestWakeRefused(t *testing.T) {
	fs := wakeServer(t, WakeOptions{MaxHeld: 2, MaxHeldPerOrg: 1})
	d := fs.device(fs.join)
	other := fs.device(fs.join)
	stranger := fs.device("") // no join token: pending, not a member
	if _, code, body := openWake(t, fs.hs.URL, fs.hs.Client(), d.id.ID); code != http.StatusUnauthorized || !oneLineError(body) {
		t.Errorf("no client certificate: %d %s, want 401 and one error line", code, body)
	}
	if _, code, body := openWake(t, fs.hs.URL, d.hc, other.id.ID); code != http.StatusForbidden || !oneLineError(body) {
		t.Errorf("another device's id: %d %s, want 403", code, body)
	}
	if _, code, body := openWake(t, fs.hs.URL, stranger.hc, stranger.id.ID); code != http.StatusForbidden || !strings.Contains(body, "not in any organization") {
		t.Errorf("device without an organization: %d %s, want 403", code, body)
	}
	if code, body := fs.do(d.hc, http.MethodPost, "/v1/devices/"+d.id.ID+"/wake", "x"); code != http.StatusMethodNotAllowed || !oneLineError(body) {
		t.Errorf("POST: %d %s, want 405", code, body)
	}
	if _, code, _ := openWake(t, fs.hs.URL, d.hc, "BAD_ID"); code != http.StatusBadRequest {
		t.Errorf("malformed id: %d, want 400", code)
	}

	// The organization's cap (1): the second device is refused with a
	// Retry-After, and polls meanwhile.
	s, code, body := openWake(t, fs.hs.URL, d.hc, d.id.ID)
	if code != http.StatusOK {
		t.Fatalf("wake: %d %s", code, body)
	}
	s.next(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fs.hs.URL+"/v1/devices/"+other.id.ID+"/wake", nil)
	resp, err := other.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the organization's cap: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The first stream closed, its slot is free again.
	s.resp.Body.Close()
	for fs.srv.Held() != 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if s2, code, body := openWake(t, fs.hs.URL, other.hc, other.id.ID); code != http.StatusOK {
		t.Errorf("after the first stream ended: %d %s, want 200", code, body)
	} else {
		s2.next(t)
	}
}

// TestWakeGlobalCap: the server's cap applies across organizations.
func TestWakeGlobalCap(t *testing.T) {
	fs := wakeServer(t, WakeOptions{MaxHeld: 1})
	a, b := fs.device(fs.join), fs.device(fs.join)
	s, code, body := openWake(t, fs.hs.URL, a.hc, a.id.ID)
	if code != http.StatusOK {
		t.Fatalf("wake: %d %s", code, body)
	}
	s.next(t)
	if _, code, body := openWake(t, fs.hs.URL, b.hc, b.id.ID); code != http.StatusServiceUnavailable || !strings.Contains(body, "server's cap") {
		t.Errorf("past the server's cap: %d %s, want 503", code, body)
	}
}

// TestWakeOneStreamPerDevice: a device holds one stream; its new one
// replaces the older, which ends, and takes its slot even at the server's
// cap (a device that lost its connection comes back at once). Another
// device is still refused at the cap.
func TestWakeOneStreamPerDevice(t *testing.T) {
	fs := wakeServer(t, WakeOptions{MaxHeld: 1})
	d, other := fs.device(fs.join), fs.device(fs.join)
	first, code, body := openWake(t, fs.hs.URL, d.hc, d.id.ID)
	if code != http.StatusOK {
		t.Fatalf("wake: %d %s", code, body)
	}
	first.next(t)
	second, code, body := openWake(t, fs.hs.URL, d.hc, d.id.ID)
	if code != http.StatusOK {
		t.Fatalf("the device's second stream at the server's cap of 1: %d %s, want 200 (it replaces the first)", code, body)
	}
	second.next(t)
	for first.sc.Scan() { // the replaced stream ends
	}
	if n := fs.srv.Held(); n != 1 {
		t.Errorf("Held() = %d after the replacement, want 1", n)
	}
	if _, code, body := openWake(t, fs.hs.URL, other.hc, other.id.ID); code != http.StatusServiceUnavailable || !strings.Contains(body, "server's cap") {
		t.Errorf("another device at the cap: %d %s, want 503", code, body)
	}
	second.resp.Body.Close()
	for fs.srv.Held() != 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if s, code, body := openWake(t, fs.hs.URL, other.hc, other.id.ID); code != http.StatusOK {
		t.Errorf("after the device's stream ended: %d %s, want 200", code, body)
	} else {
		s.next(t)
	}
}

// acceptLog is a listener that keeps the connections it accepted.
type acceptLog struct {
	net.Listener
	conns chan net.Conn
}

func (l acceptLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.conns <- c:
		default:
		}
	}
	return c, err
}

// wakeRig is plumb serve with a fleet, started through Serve on a real
// 127.0.0.1 listener, and one device's HTTP/1.1 client (as plumbd speaks,
// fetch.NewTransport) joined with the repository's join token.
type wakeRig struct {
	srv    *Server
	l      *acceptLog
	url    string
	id     *identity.Identity
	hc     *http.Client
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// newWakeRig starts the rig; dial, if not nil, is the device's dialer.
func newWakeRig(t *testing.T, o Options, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *wakeRig {
	t.Helper()
	o.Dir = makeRepo(t).dir
	o.CertDir = filepath.Join(t.TempDir(), "tls")
	o.Fleet = &FleetOptions{Bootstrap: true}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &wakeRig{srv: srv, l: &acceptLog{Listener: tl, conns: make(chan net.Conn, 8)}, url: "https://" + tl.Addr().String(), done: make(chan error, 1)}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(t.Context())
	go func() { r.done <- srv.Serve(ctx, r.l) }()
	t.Cleanup(func() { r.cancel(); <-r.done })

	ca, err := os.ReadFile(srv.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	if r.id, err = identity.FromFile(filepath.Join(t.TempDir(), "identity.key")); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(filepath.Join(o.Dir, JoinTokenFile))
	tr := &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	t.Cleanup(tr.CloseIdleConnections)
	if r.hc, err = report.DeviceClient(&http.Client{Transport: tr}, r.id, strings.TrimSpace(string(tok))); err != nil {
		t.Fatal(err)
	}
	return r
}

// open opens the device's wake-up stream and reads its first event.
func (r *wakeRig) open(t *testing.T) *stream {
	t.Helper()
	s, code, body := openWake(t, r.url, r.hc, r.id.ID)
	if code != http.StatusOK {
		t.Fatalf("wake: %d %s", code, body)
	}
	s.next(t)
	return s
}

// TestWakeServe: through Serve (real listener), a held stream outlives
// the server's ReadTimeout (heartbeats keep coming), its connection has
// TCP_USER_TIMEOUT set to the wake timeout (a vanished device's stream
// ends), and a shutdown ends it at once.
func TestWakeServe(t *testing.T) {
	r := newWakeRig(t, Options{ReadTimeout: 100 * time.Millisecond, Wake: WakeOptions{Heartbeat: 50 * time.Millisecond, Timeout: 7 * time.Second}}, nil)
	s := r.open(t)
	if s.resp.ProtoMajor != 1 {
		t.Errorf("protocol %s, want HTTP/1.1", s.resp.Proto)
	}
	// The device's one connection is the stream's: it has the timeout.
	sc, err := (<-r.l.conns).(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ut := -1
	sc.Control(func(fd uintptr) { ut, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) })
	if err != nil || ut != 7000 {
		t.Errorf("TCP_USER_TIMEOUT of the stream's connection = %d ms (%v), want 7000", ut, err)
	}
	// Ten heartbeats: 5 ReadTimeouts later the stream is still there.
	for beats := 0; beats < 10; {
		if !s.sc.Scan() {
			t.Fatalf("stream ended after %d heartbeats: %v", beats, s.sc.Err())
		}
		if s.sc.Text() == ":" {
			beats++
		}
	}
	r.cancel()
	for s.sc.Scan() {
	}
	if err := <-r.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	r.done <- nil
}

// TestWakeDeadPeer: a device that stops taking the stream's bytes (its
// receive buffer full: a vanished peer looks the same to the server once
// its writes go unacknowledged) loses its stream within the heartbeat and
// the wake timeout, and its slot is free again. Without the timeout the
// stream would be held as long as the connection lives.
func TestWakeDeadPeer(t *testing.T) {
	// The smallest receive buffer the kernel allows, set before connect.
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1) })
		return serr
	}}
	r := newWakeRig(t, Options{Wake: WakeOptions{Heartbeat: 2 * time.Millisecond, Timeout: 300 * time.Millisecond}}, d.DialContext)
	r.open(t)
	if n := r.srv.Held(); n != 1 {
		t.Fatalf("Held() = %d, want 1", n)
	}
	// The device reads no more. Heartbeats fill its buffer and the
	// server's, then a write blocks past the timeout. (The deadline only
	// keeps a broken build from hanging the package.)
	for deadline := time.Now().Add(60 * time.Second); r.srv.Held() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream of a device that reads no more is still held after 60 s (timeout 300 ms)")
		}
	}
}

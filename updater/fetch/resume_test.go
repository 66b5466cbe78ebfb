package fetch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

const bigTarget = "qemu-x86_64/3.0.0/rootfs.sqfs"

// bigRepo publishes a target of size pseudo-random bytes and returns the
// repository and the target's sha256.
func bigRepo(t *testing.T, size int64) (*fetchtest.Repo, string) {
	t.Helper()
	r := fetchtest.NewRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	fetchtest.WritePRNG(t, src, size)
	r.AddTargetFile(bigTarget, src)
	r.Publish()
	return r, fileSHA(t, r.TargetPath(bigTarget))
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fastRetries keep the tests quick.
var fastRetries = Link{Attempts: 5, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}

func newClient(t *testing.T, repo *fetchtest.Repo, url string, hc *http.Client, link Link) *Client {
	t.Helper()
	c, err := New(Options{Repo: url, MetadataDir: t.TempDir(), TrustedRoot: repo.RootJSON(1), HTTPClient: hc, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cutProxy forwards TCP connections to a server and cuts the connection
// carrying the response byte number cuts[0] (counted over all
// connections), then cuts[1], and so on. It counts the response bytes it
// delivered: what crossed the device's link.
type cutProxy struct {
	ln        net.Listener
	target    string
	mu        sync.Mutex
	cuts      []int64
	forwarded int64
	conns     []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go p.back(c, s)
	}
}

// back copies the server's bytes to the client, cutting where told.
func (p *cutProxy) back(c, s net.Conn) {
	defer c.Close()
	defer s.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			p.mu.Lock()
			allowed, cut := int64(n), false
			if len(p.cuts) > 0 && p.forwarded+allowed >= p.cuts[0] {
				allowed, cut = p.cuts[0]-p.forwarded, true
				p.cuts = p.cuts[1:]
			}
			p.forwarded += allowed
			p.mu.Unlock()
			if _, werr := c.Write(buf[:allowed]); werr != nil || cut {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cutAt arms cuts at the given fractions of size from now on and returns
// the count of bytes forwarded so far.
func (p *cutProxy) cutAt(size int64, fractions ...float64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts = nil
	for _, f := range fractions {
		p.cuts = append(p.cuts, p.forwarded+int64(f*float64(size)))
	}
	return p.forwarded
}

func (p *cutProxy) counts() (forwarded int64, cutsLeft int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded, len(p.cuts)
}

// TestResumeAfterCuts: a 32 MiB target whose connection is cut at 30%,
// 60% and 90% arrives whole and verified, fetching at most 1.1 times its
// size, both within one call (retries) and across calls (the caller
// passes the count of bytes written).
func TestResumeAfterCuts(t *testing.T) {
	const size = 32 << 20
	repo, sum := bigRepo(t, size)
	srv := fetchtest.Serve(t, repo.Dir)
	for _, tt := range []struct {
		name     string
		attempts int
		calls    int // DownloadFile calls needed
	}{
		{"one call with retries", 5, 1},
		{"a new call after each cut", 1, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newCutProxy(t, srv.Listener.Addr().String())
			link := fastRetries
			link.Attempts = tt.attempts
			c := newClient(t, repo, "https://"+p.ln.Addr().String(), srv.Client(), link)
			if err := c.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			base := p.cutAt(size, 0.3, 0.6, 0.9)
			srv.Reset()
			out := filepath.Join(t.TempDir(), "slot")
			if err := os.WriteFile(out, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var done int64
			calls := 0
			for ; calls < 10; calls++ {
				f, err := os.OpenFile(out, os.O_RDWR, 0) // as a new process would
				if err != nil {
					t.Fatal(err)
				}
				n, err := c.DownloadFile(t.Context(), bigTarget, f, done, nil)
				f.Close()
				if err == nil {
					done = n
					calls++
					break
				}
				if errors.Is(err, ErrVerification) || n < done {
					t.Fatalf("DownloadFile(done=%d) = %d, %v; want progress and a transport error", done, n, err)
				}
				t.Logf("call %d: %d bytes, %v", calls+1, n, err)
				done = n
			}
			fwd, left := p.counts()
			fetched := fwd - base
			t.Logf("target %d bytes; fetched through the link %d bytes (%.3fx); server wrote %d bytes incl. TLS and socket buffers lost at the cuts; statuses %v",
				int64(size), fetched, float64(fetched)/size, srv.Wire.Load(), srv.Statuses())
			if calls != tt.calls || done != size || left != 0 {
				t.Errorf("got %d calls, %d bytes, %d cuts left; want %d calls, %d bytes, 0 cuts left", calls, done, left, tt.calls, int64(size))
			}
			if got := fileSHA(t, out); got != sum {
				t.Errorf("sha256 of the slot = %s, want %s", got, sum)
			}
			if fetched > size*11/10 {
				t.Errorf("fetched %d bytes for a %d-byte target, want <= 1.1x", fetched, int64(size))
			}
			partial := 0
			for _, s := range srv.Statuses() {
				if s == http.StatusPartialContent {
					partial++
				}
			}
			if partial != 3 {
				t.Errorf("statuses %v: want 3 ranged answers (206)", srv.Statuses())
			}
		})
	}
}

// fileServer serves dir over HTTPS like `plumb serve` but through wrap,
// and counts target requests and the ranges they asked for.
type fileServer struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string // Range header of each target request ("" = none)
}

func serveWrapped(t *testing.T, dir string, wrap func(http.Handler) http.Handler) *fileServer {
	fs := &fileServer{}
	var h http.Handler = http.FileServer(http.Dir(dir))
	if wrap != nil {
		h = wrap(h)
	}
	fs.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/targets/") {
			fs.mu.Lock()
			fs.ranges = append(fs.ranges, r.Header.Get("Range"))
			fs.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) targetRequests() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.ranges...)
}

type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// TestResumeCases: what is on disk before the call, what the server does
// with ranges, and what the call must then write.
func TestResumeCases(t *testing.T) {
	const size = 1 << 20
	repo, sum := bigRepo(t, size)
	good, err := os.ReadFile(repo.TargetPath(bigTarget))
	if err != nil {
		t.Fatal(err)
	}
	stripRange := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			h.ServeHTTP(w, r)
		})
	}
	tests := []struct {
		name         string
		onDisk       int64 // bytes of the target on disk before the call
		flip         int64 // offset of a corrupted byte; -1 = none
		done         int64
		ignoresRange bool
		wantWritten  int64    // bytes written by the call (progress)
		wantRanges   []string // Range headers of the target requests
	}{
		{"fresh", 0, -1, 0, false, size, []string{""}},
		{"resume at 40%", 400000, -1, 400000, false, size - 400000, []string{"bytes=400000-"}},
		{"server ignores range: clean restart", 400000, -1, 400000, true, size, []string{"bytes=400000-"}},
		{"corrupted prefix: restart from 0", 400000, 1000, 400000, false, size - 400000 + size, []string{"bytes=400000-", ""}},
		{"done beyond the length: restart", size, -1, size + 5, false, size, []string{""}},
		{"file shorter than done: restart", 1000, -1, 500000, false, size, []string{""}},
		{"complete already: no request", size, -1, size, false, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wrap func(http.Handler) http.Handler
			if tt.ignoresRange {
				wrap = stripRange
			}
			srv := serveWrapped(t, repo.Dir, wrap)
			c := newClient(t, repo, srv.URL, srv.Client(), fastRetries)
			if err := c.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "slot")
			prefix := bytes.Clone(good[:tt.onDisk])
			if tt.flip >= 0 {
				prefix[tt.flip] ^= 0xff
			}
			if err := os.WriteFile(out, prefix, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(out, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var prog countWriter
			n, err := c.DownloadFile(t.Context(), bigTarget, f, tt.done, &prog)
			if err != nil || n != size {
				t.Fatalf("DownloadFile(done=%d) = %d, %v; want %d, nil", tt.done, n, err, int64(size))
			}
			if got := fileSHA(t, out); got != sum {
				t.Errorf("sha256 of the slot = %s, want %s", got, sum)
			}
			if got := prog.n.Load(); got != tt.wantWritten {
				t.Errorf("bytes written = %d, want %d", got, tt.wantWritten)
			}
			if got := srv.targetRequests(); strings.Join(got, ",") != strings.Join(tt.wantRanges, ",") {
				t.Errorf("target requests with Range %q, want %q", got, tt.wantRanges)
			}
		})
	}
}

// TestResumeTamperedServer: a server whose target does not match the
// metadata is refused, without retries; after a resume, once more from 0.
func TestResumeTamperedServer(t *testing.T) {
	const size = 1 << 20
	repo, _ := bigRepo(t, size)
	p := repo.TargetPath(bigTarget)
	good, _ := os.ReadFile(p)
	bad := bytes.Clone(good)
	bad[size-10] ^= 1
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		done       int64
		wantRanges []string
	}{
		{"from scratch", 0, []string{""}},
		{"resumed", 1000, []string{"bytes=1000-", ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveWrapped(t, repo.Dir, nil)
			c := newClient(t, repo, srv.URL, srv.Client(), fastRetries)
			if err := c.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "slot")
			os.WriteFile(out, good[:tt.done], 0o600)
			f, _ := os.OpenFile(out, os.O_RDWR, 0)
			defer f.Close()
			_, err := c.DownloadFile(t.Context(), bigTarget, f, tt.done, nil)
			if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "sha256 mismatch") {
				t.Errorf("DownloadFile = %v, want a sha256 mismatch refusal", err)
			}
			if got := srv.targetRequests(); strings.Join(got, ",") != strings.Join(tt.wantRanges, ",") {
				t.Errorf("target requests with Range %q, want %q", got, tt.wantRanges)
			}
		})
	}
}

// TestRetriesGiveUp: a server that keeps answering 503 gets the configured
// number of attempts, and the error names them and the last cause.
func TestRetriesGiveUp(t *testing.T) {
	repo, _ := bigRepo(t, 1000)
	srv := serveWrapped(t, repo.Dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/targets/") {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	link := fastRetries
	link.Attempts = 3
	c := newClient(t, repo, srv.URL, srv.Client(), link)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "slot"))
	defer f.Close()
	_, err := c.DownloadFile(t.Context(), bigTarget, f, 0, nil)
	want := "target " + bigTarget + ": giving up after 3 attempts, 0 of 1000 bytes written: target " + bigTarget + ": fetching " + srv.URL
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), ": HTTP 503") || errors.Is(err, ErrVerification) {
		t.Errorf("DownloadFile = %v, want %q…: HTTP 503", err, want)
	}
	if got := len(srv.targetRequests()); got != 3 {
		t.Errorf("%d target requests, want 3", got)
	}
}

// TestIdleTimeout: a body that stalls is abandoned after the idle timeout
// and the download resumes.
func TestIdleTimeout(t *testing.T) {
	const size = 1 << 20
	repo, sum := bigRepo(t, size)
	var stalled atomic.Bool
	srv := serveWrapped(t, repo.Dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/targets/") && !stalled.Swap(true) {
				w.Header().Set("Content-Length", "1048576")
				w.WriteHeader(http.StatusOK)
				b, _ := os.ReadFile(repo.TargetPath(bigTarget))
				w.Write(b[:5000])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	link := fastRetries
	link.IdleTimeout = 200 * time.Millisecond
	c := newClient(t, repo, srv.URL, srv.Client(), link)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "slot")
	f, _ := os.Create(out)
	defer f.Close()
	if n, err := c.DownloadFile(t.Context(), bigTarget, f, 0, nil); err != nil || n != size {
		t.Fatalf("DownloadFile = %d, %v; want %d, nil", n, err, int64(size))
	}
	if got := srv.targetRequests(); strings.Join(got, ",") != ",bytes=5000-" {
		t.Errorf("target requests with Range %q, want a stalled one, then bytes=5000-", got)
	}
	if got := fileSHA(t, out); got != sum {
		t.Errorf("sha256 of the slot = %s, want %s", got, sum)
	}
}

// TestRequestTimeout: a metadata request that gets no answer fails after
// Link.RequestTimeout with a line that says so.
func TestRequestTimeout(t *testing.T) {
	repo, _ := bigRepo(t, 1000)
	srv := serveWrapped(t, repo.Dir, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "timestamp.json") {
				<-r.Context().Done()
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	c := newClient(t, repo, srv.URL, srv.Client(), Link{RequestTimeout: 200 * time.Millisecond})
	start := time.Now()
	err := c.Refresh(t.Context())
	want := "refreshing metadata: fetching " + srv.URL + "/metadata/timestamp.json: no complete answer within 200ms"
	if err == nil || err.Error() != want {
		t.Errorf("Refresh = %v, want %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Refresh took %s, want about 200ms", d)
	}
}

// TestRateLimit: 2 MiB at 1 MiB/s takes about 2 s (the bucket's first
// 64 KiB are free); the bound is loose.
func TestRateLimit(t *testing.T) {
	const size = 2 << 20
	repo, _ := bigRepo(t, size)
	srv := fetchtest.Serve(t, repo.Dir)
	c := newClient(t, repo, srv.URL, srv.Client(), Link{RateLimit: 1 << 20})
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "slot"))
	defer f.Close()
	start := time.Now()
	if _, err := c.DownloadFile(t.Context(), bigTarget, f, 0, nil); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("2 MiB at 1 MiB/s took %s", d)
	if d < 1800*time.Millisecond || d > 20*time.Second {
		t.Errorf("2 MiB at 1 MiB/s took %s, want about 2s", d)
	}
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1. It dials hosts named
// in hosts at the given address instead (so a test can use a hostname that
// is not loopback), refuses with 403 when refuse is set, and counts
// CONNECTs.
type connectProxy struct {
	ln       net.Listener
	hosts    map[string]string
	refuse   bool
	connects atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newConnectProxy(t *testing.T, hosts map[string]string, refuse bool) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, hosts: hosts, refuse: refuse}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *connectProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *connectProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go p.handle(c)
	}
}

func (p *connectProxy) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.connects.Add(1)
	if p.refuse {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	addr := req.Host
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if to, ok := p.hosts[host]; ok {
			addr = net.JoinHostPort(to, port)
		}
	}
	s, err := net.Dial("tcp", addr)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	defer s.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { io.Copy(s, br); s.Close() }()
	io.Copy(c, s)
}

// TestProxy: metadata and target go through a CONNECT proxy named in
// Options or in HTTPS_PROXY. Go never proxies 127.0.0.1 from the
// environment, so the environment case uses the repository URL
// https://example.com:PORT (a name in httptest's certificate) and the
// proxy maps example.com to 127.0.0.1: the client never resolves it.
func TestProxy(t *testing.T) {
	const size = 1 << 20
	repo, sum := bigRepo(t, size)
	srv := fetchtest.Serve(t, repo.Dir)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tt := range []struct {
		name    string
		fromEnv bool
	}{
		{"Options.Proxy", false},
		{"HTTPS_PROXY", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newConnectProxy(t, map[string]string{"example.com": "127.0.0.1"}, false)
			url, link := srv.URL, fastRetries
			if tt.fromEnv {
				for _, k := range []string{"HTTPS_PROXY", "https_proxy"} {
					t.Setenv(k, p.URL())
				}
				for _, k := range []string{"NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"} {
					t.Setenv(k, "")
				}
				url = "https://example.com:" + port
			} else {
				link.Proxy = p.URL()
			}
			c := newClient(t, repo, url, srv.Client(), link)
			if err := c.Refresh(t.Context()); err != nil {
				t.Fatalf("Refresh through the proxy: %v", err)
			}
			out := filepath.Join(t.TempDir(), "slot")
			f, _ := os.Create(out)
			defer f.Close()
			if n, err := c.DownloadFile(t.Context(), bigTarget, f, 0, nil); err != nil || n != size {
				t.Fatalf("DownloadFile through the proxy = %d, %v", n, err)
			}
			if got := fileSHA(t, out); got != sum {
				t.Errorf("sha256 of the slot = %s, want %s", got, sum)
			}
			if got := p.connects.Load(); got < 1 {
				t.Errorf("%d CONNECTs, want at least 1", got)
			}
			t.Logf("%d CONNECTs", p.connects.Load())
		})
	}
}

// TestProxyRefuses: a proxy that answers 403, or that cannot be reached,
// fails the refresh with one line naming the proxy and the repository.
func TestProxyRefuses(t *testing.T) {
	repo, _ := bigRepo(t, 1000)
	srv := fetchtest.Serve(t, repo.Dir)
	target := srv.Listener.Addr().String()
	refusing := newConnectProxy(t, nil, true)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + closed.Addr().String()
	closed.Close()
	for _, tt := range []struct {
		name, proxy, want string
	}{
		{"403", refusing.URL(), "proxy " + refusing.URL() + " refused the connection to " + target + ": 403 Forbidden"},
		{"connection refused", gone, "proxy " + gone + " refused the connection to " + target + ": connect: connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, repo, srv.URL, srv.Client(), Link{Proxy: tt.proxy})
			err := c.Refresh(t.Context())
			if err == nil || !strings.HasSuffix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Refresh = %v, want one line ending %q", err, tt.want)
			}
		})
	}
	if got := refusing.connects.Load(); got != 1 {
		t.Errorf("%d CONNECTs to the refusing proxy, want 1", got)
	}
}

// TestLinkOptions: bad link options are one-line errors from New.
func TestLinkOptions(t *testing.T) {
	repo, _ := bigRepo(t, 10)
	tests := []struct {
		link Link
		want string
	}{
		{Link{Proxy: "3128"}, `fetch options: proxy: expected a URL like http://10.0.0.1:3128, got "3128"`},
		{Link{Proxy: "ftp://p:21"}, `fetch options: proxy: expected a URL like http://10.0.0.1:3128, got "ftp://p:21"`},
		{Link{RateLimit: -1}, "fetch options: rate limit: expected bytes per second or 0, got -1"},
		{Link{Attempts: -2}, "fetch options: attempts: expected a count or 0, got -2"},
		{Link{RetryBase: -time.Second}, "fetch options: retry backoff: expected positive durations or 0, got -1s and 0s"},
	}
	for _, tt := range tests {
		_, err := New(Options{Repo: "https://r/", MetadataDir: t.TempDir(), TrustedRoot: repo.RootJSON(1), Link: tt.link})
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %q", tt.link, err, tt.want)
		}
	}
	// A caller's transport that is not an *http.Transport cannot take a proxy.
	hc := &http.Client{Transport: roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("no") })}
	_, err := New(Options{Repo: "https://r/", MetadataDir: t.TempDir(), TrustedRoot: repo.RootJSON(1), HTTPClient: hc, Link: Link{Proxy: "http://p:3128"}})
	if err == nil || !strings.Contains(err.Error(), "expected the HTTP client's transport to be an *http.Transport") {
		t.Errorf("New(custom transport, proxy) = %v, want a transport error", err)
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{4, 4 * time.Second, 8 * time.Second},
		{10, 30 * time.Second, time.Minute},
		{100, 30 * time.Second, time.Minute},
	} {
		for range 20 {
			if got := backoff(time.Second, time.Minute, tt.n); got < tt.lo || got > tt.hi {
				t.Errorf("backoff(1s, 1m, %d) = %s, want in [%s, %s]", tt.n, got, tt.lo, tt.hi)
			}
		}
	}
}

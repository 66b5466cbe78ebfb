package poll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

// Polls per device and 30-day month.
const (
	pollsPerMonth5  = 30 * 24 * 60 / 5
	pollsPerMonth15 = 30 * 24 * 60 / 15
)

// ipHeader is the IPv4 + TCP header of one segment with the timestamp
// option Linux sends (20 + 20 + 12 bytes): the estimate of what the link
// carries beyond the TCP payload the relay counts.
const ipHeader = 52

func BenchmarkIdlePoll(b *testing.B) {
	repo := fetchtest.NewRepo(b)
	repo.AddTarget("qemu-x86_64/1.0.0/rootfs.sqfs", []byte("rootfs"), map[string]string{"version": "1.0.0"})
	repo.Publish()
	dir := b.TempDir()
	// A copy, not a link: nginx refuses links (disable_symlinks on).
	if err := os.CopyFS(filepath.Join(dir, "repository"), os.DirFS(repo.Dir)); err != nil {
		b.Fatal(err)
	}
	certDir := filepath.Join(dir, "tls")
	srv, err := server.New(server.Options{Dir: dir, CertDir: certDir})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	b.Cleanup(func() { cancel(); <-done })
	caPEM, err := os.ReadFile(srv.CACertPath())
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	servers := []struct{ name, addr string }{{"plumb-serve", l.Addr().String()}}
	if nginx, err := exec("nginx"); err == nil {
		u := testutil.StartNginx(b, nginx, dir, certDir)
		servers = append(servers, struct{ name, addr string }{"nginx", u[len("https://"):]})
	} else {
		b.Logf("nginx not found (apt-get install nginx-light): only plumb serve measured")
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) { benchServer(b, repo, pool, s.addr) })
	}
}

func exec(name string) (string, error) {
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}

func benchServer(b *testing.B, repo *fetchtest.Repo, pool *x509.CertPool, backend string) {
	r := newRelay(b, backend)
	base := "https://" + r.addr()
	sessions := filepath.Join(b.TempDir(), "tls-sessions.json")
	meta := b.TempDir()
	newClient := func(tr *http.Transport) *fetch.Client {
		c, err := fetch.New(fetch.Options{Repo: base, MetadataDir: meta, TrustedRoot: repo.RootJSON(1), HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	device := func() *fetch.Client {
		return newClient(fetch.NewTransport(fetch.TLSConfig(pool, fetch.NewSessionCache(sessions, nil))))
	}
	poll := func(c *fetch.Client) (wire, ip int64) {
		r.closeAll() // the NAT or the server dropped the idle connection
		r.reset()
		if err := c.Refresh(b.Context()); err != nil {
			b.Fatal(err)
		}
		r.closeAll()
		return r.wire.Load(), r.wire.Load() + r.segs.Load()*ipHeader
	}

	// The first refresh fetches the metadata and the first ticket.
	c := device()
	if err := c.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	// Before: Go's default transport (HTTP/2, hybrid post-quantum key
	// share, no session cache) as plumbd used until now.
	old := http.DefaultTransport.(*http.Transport).Clone()
	old.TLSClientConfig = &tls.Config{RootCAs: pool}
	before, _ := poll(newClient(old))
	// A full TLS handshake with today's settings (no ticket yet).
	full, _ := poll(newClient(fetch.NewTransport(fetch.TLSConfig(pool, tls.NewLRUClientSessionCache(1)))))
	// After an agent restart: the ticket comes from the file.
	restart, _ := poll(device())

	var wire, ip int64
	n := int64(0)
	for b.Loop() {
		w, i := poll(c)
		wire += w
		ip += i
		n++
	}
	b.ReportMetric(float64(wire)/float64(n), "wire-B/poll")
	b.ReportMetric(float64(ip)/float64(n), "ip-B/poll")
	b.ReportMetric(float64(restart), "restart-B/poll")
	b.ReportMetric(float64(full), "full-B/poll")
	b.ReportMetric(float64(before), "before-B/poll")
	b.ReportMetric(float64(wire)/float64(n)*pollsPerMonth5/1e6, "MB/month@5min")
	b.ReportMetric(float64(wire)/float64(n)*pollsPerMonth15/1e6, "MB/month@15min")
	b.ReportMetric(float64(ip)/float64(n)*pollsPerMonth5/1e6, "ipMB/month@5min")
	b.ReportMetric(float64(ip)/float64(n)*pollsPerMonth15/1e6, "ipMB/month@15min")
	b.ReportMetric(0, "ns/op")
}

// relay is a TCP relay on 127.0.0.1 that counts the bytes it carries both
// ways (TCP payload: TLS records, handshake included) and the TCP segments
// of its client side, read with TCP_INFO just before closing it (for the IP + TCP header estimate).
type relay struct {
	l       net.Listener
	backend string
	wire    atomic.Int64
	segs    atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]bool // true: the client side
	wg      sync.WaitGroup
}

func newRelay(b *testing.B, backend string) *relay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &relay{l: l, backend: backend, conns: map[net.Conn]bool{}}
	go r.accept()
	b.Cleanup(func() { l.Close(); r.closeAll() })
	return r
}

func (r *relay) addr() string { return r.l.Addr().String() }

func (r *relay) reset() { r.wire.Store(0); r.segs.Store(0) }

func (r *relay) accept() {
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.backend)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[s] = true, false
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(s, c)
		go r.pipe(c, s)
	}
}

// pipe copies from src to dst, counting.
func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.wire.Add(int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// countSegments adds the segments sent and received on the client side so
// far (the handshake's SYN included), plus 4 for the close (FIN and ACK
// each way) that follows.
func (r *relay) countSegments(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			r.segs.Add(int64(info.Segs_in) + int64(info.Segs_out) + 4)
		}
	})
}

// closeAll ends every relayed connection and waits for the pipes to finish
// counting (the server and the client see the connection closed).
func (r *relay) closeAll() {
	r.mu.Lock()
	for c, client := range r.conns {
		if client {
			r.countSegments(c)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseRead() // unblocks the pipe reading it; writes still flow
		}
	}
	r.conns = map[net.Conn]bool{}
	r.mu.Unlock()
	r.wg.Wait()
	time.Sleep(20 * time.Millisecond) // the client's transport notices the close
}

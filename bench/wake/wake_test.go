package wake

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/plumb-os/plumb/bench/sim"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/wake"
)

// Real-world intervals the figures are scaled to (docs/wake.md).
const (
	pollInterval = 5 * time.Minute // plumbd's default poll
	natInterval  = 4 * time.Minute // a NAT-safe keep-alive (heartbeat, MQTT PINGREQ)
	month        = 30 * 24 * time.Hour
	topic        = "plumb/qemu-x86_64/stable/timestamp"
)

// TestMain runs the server child (plumb serve in its own process, so its
// CPU and memory can be read by PID) when WAKE_CHILD says so.
func TestMain(m *testing.M) {
	if os.Getenv("WAKE_CHILD") == "serve" {
		if err := serveChild(); err != nil {
			fmt.Fprintln(os.Stderr, "wake serve child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveChild is `plumb serve` with the fleet service (SQLite), as the
// benchmark configures it: joins not rate limited (every simulated device
// joins at its first connection), wake caps above the device count.
func serveChild() error {
	dir, addr := os.Getenv("WAKE_DIR"), os.Getenv("WAKE_ADDR")
	hb, err := time.ParseDuration(os.Getenv("WAKE_HEARTBEAT"))
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{
		Dir: dir, CertDir: filepath.Join(dir, "tls"),
		Fleet: &server.FleetOptions{DB: filepath.Join(dir, "fleet.db"), Bootstrap: true, JoinRate: 1e5, PendingRate: 1e5},
		Wake:  server.WakeOptions{Heartbeat: hb, MaxHeld: 1 << 20, MaxHeldPerOrg: 1 << 20},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return srv.Serve(ctx, l)
}

// bench is one run's shared set-up.
type bench struct {
	b      *testing.B
	n      int           // devices
	window time.Duration // a compressed poll interval / keep-alive window
	keep   time.Duration // the compressed keep-alive / heartbeat
	dir    string        // serve dir: repository/, tls/, fleet.db
	repo   *fetchtest.Repo
	pool   *x509.CertPool
	addr   string // plumb serve
	child  *exec.Cmd
	ver    int
}

func devices() int {
	if n, err := strconv.Atoi(os.Getenv("WAKE_DEVICES")); err == nil && n > 0 {
		return n
	}
	return 1000
}

func BenchmarkWake(b *testing.B) {
	n := devices()
	before, after, err := RaiseFileLimit(uint64(4*n + 4096))
	if err != nil {
		b.Fatalf("raising RLIMIT_NOFILE: %v", err)
	}
	b.Logf("RLIMIT_NOFILE soft/hard %d/%d -> %d/%d (needed: about 2 per device in this process and in the server)", before.Cur, before.Max, after.Cur, after.Max)
	be := &bench{b: b, n: n, window: max(10*time.Second, time.Duration(n)*time.Second/400), keep: 10 * time.Second, dir: b.TempDir()}
	be.repo = fetchtest.NewRepo(b)
	be.repo.AddTarget("qemu-x86_64/1.0.0/rootfs.sqfs", []byte("rootfs"), map[string]string{"version": "1.0.0"})
	be.repo.Publish()
	be.sync()
	// The CA and certificate (made once, shared by every server).
	if _, err := server.New(server.Options{Dir: be.dir, CertDir: filepath.Join(be.dir, "tls")}); err != nil {
		b.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(be.dir, "tls", "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	be.pool = x509.NewCertPool()
	be.pool.AppendCertsFromPEM(ca)
	be.addr = freeAddr(b)
	be.startServe()
	b.Cleanup(be.stopServe)

	var rows []row
	for b.Loop() {
		rows = append(rows, be.polling("poll: plumb serve", "https://"+be.addr, be.servePIDs))
		if nginx, err := exec.LookPath("nginx"); err == nil {
			// A CDN keeps timestamp.json a few seconds: 10 s at a 5-min
			// poll, scaled to the compressed window like the poll.
			ttl := max(time.Second, be.window/30)
			pids, base, stop := be.startNginx(nginx, ttl)
			rows = append(rows, be.polling("poll: nginx, proxy_cache", base, func() []int { return append(pids, be.servePIDs()...) }))
			stop()
		} else {
			b.Logf("nginx not found (apt-get install nginx-light): design (a) through nginx not measured")
		}
		if mosq, err := exec.LookPath("mosquitto"); err == nil {
			rows = append(rows, be.mqtt(mosq))
		} else {
			b.Logf("mosquitto not found (apt-get install mosquitto): design (b) not measured")
		}
		rows = append(rows, be.sse())
	}
	b.ReportMetric(0, "ns/op")
	fmt.Printf("\nwake: %d simulated devices in one process; figures scaled to a %s poll and a %s keep-alive (docs/wake.md)\n", n, pollInterval, natInterval)
	fmt.Printf("%-28s %9s %9s %10s %10s %9s %9s %10s %10s %8s %9s %7s %9s\n", "design", "idle B", "idle B+IP", "MB/month", "MB/mo+IP", "CPU/10k", "RSS MB", "p95 meas", "p95 real", "pub err", "storm s", "err", "peak CPU")
	for _, r := range rows {
		fmt.Printf("%-28s %9.0f %9.0f %10.2f %10.2f %8.2f%% %9.1f %10s %10s %8d %9.1f %7d %8.0f%%\n", r.name, r.idleB, r.idleIP, r.monthMB, r.monthIPMB, r.cpu10k*100, r.rssMB,
			r.p95.Round(10*time.Millisecond), r.p95Real.Round(time.Second), r.pubErrs, r.storm.Seconds(), r.stormErrs, r.stormCPU*100)
		fmt.Printf("wake-row|%s|%.0f|%.0f|%.2f|%.2f|%.4f|%.1f|%.3f|%.1f|%d|%.2f|%d|%.2f|%.1f\n", r.name, r.idleB, r.idleIP, r.monthMB, r.monthIPMB, r.cpu10k, r.rssMB, r.p95.Seconds(), r.p95Real.Seconds(), r.pubErrs, r.storm.Seconds(), r.stormErrs, r.stormCPU, r.stormRSSMB)
	}
}

// row is one design's figures.
type row struct {
	name          string
	idleB, idleIP float64 // bytes per idle interval (poll, or keep-alive), payload and with IP/TCP headers
	monthMB       float64 // idle MB per device-month, payload
	monthIPMB     float64 // with IP/TCP headers
	cpu10k        float64 // server cores for 10,000 idle devices at the real interval
	rssMB         float64 // server RSS with n devices
	p95, p95Real  time.Duration
	pubErrs       int
	storm         time.Duration
	stormErrs     int
	stormCPU      float64
	stormRSSMB    float64
}

// sync copies the test repository into the served directory: new files
// first, timestamp.json last and atomically, as a publish does.
func (be *bench) sync() {
	src, dst := be.repo.Dir, filepath.Join(be.dir, "repository")
	var ts []byte
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == filepath.Join("metadata", "timestamp.json") {
			ts = b
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err == nil {
		tmp := filepath.Join(dst, "metadata", ".timestamp.json.tmp")
		if err = os.WriteFile(tmp, ts, 0o644); err == nil {
			err = os.Rename(tmp, filepath.Join(dst, "metadata", "timestamp.json"))
		}
	}
	if err != nil {
		be.b.Fatal(err)
	}
}

// publish makes a new release (a new timestamp) and returns when it is
// served.
func (be *bench) publish() time.Time {
	be.ver++
	v := fmt.Sprintf("1.0.%d", be.ver)
	be.repo.AddTarget("qemu-x86_64/"+v+"/rootfs.sqfs", []byte("rootfs "+v), map[string]string{"version": v})
	be.repo.Publish()
	be.sync()
	return time.Now()
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (be *bench) startServe() {
	self, err := os.Executable()
	if err != nil {
		be.b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "WAKE_CHILD=serve", "WAKE_DIR="+be.dir, "WAKE_ADDR="+be.addr, "WAKE_HEARTBEAT="+be.keep.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		be.b.Fatal(err)
	}
	be.child = cmd
	waitListening(be.b, be.addr)
}

func (be *bench) stopServe() {
	if be.child == nil {
		return
	}
	be.child.Process.Signal(syscall.SIGTERM)
	be.child.Wait()
	be.child = nil
}

func (be *bench) servePIDs() []int {
	if be.child == nil {
		return nil
	}
	return []int{be.child.Process.Pid}
}

func waitListening(b *testing.B, addr string) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	b.Fatalf("nothing listens on %s after 30 s", addr)
}

// poller is a device's HTTPS client for timestamp.json: plumbd's TLS
// settings (fetch.TLSConfig: one X25519 share, tickets kept), HTTP/1.1,
// a new TCP connection for every poll.
type poller struct {
	hc   *http.Client
	tr   *http.Transport
	etag string
}

func newPoller(m *Meter, pool *x509.CertPool) *poller {
	tr := fetch.NewTransport(fetch.TLSConfig(pool, tls.NewLRUClientSessionCache(1)))
	tr.DialContext = m.DialContext
	tr.Proxy = nil
	return &poller{hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}, tr: tr}
}

// poll is plumbd's idle poll: a conditional GET of timestamp.json (the
// simulated pull: plumbd would go on to snapshot and targets, verify them
// with TUF and download). It reports whether the file changed.
func (p *poller) poll(ctx context.Context, base string) (bool, error) {
	defer p.tr.CloseIdleConnections() // the NAT forgets the connection
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metadata/timestamp.json", nil)
	if err != nil {
		return false, err
	}
	req.Header["User-Agent"] = []string{""}
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return false, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return false, nil
	case http.StatusOK:
		p.etag = resp.Header.Get("ETag")
		return true, nil
	}
	return false, fmt.Errorf("GET timestamp.json: %s", resp.Status)
}

// parallel runs f for every device with at most limit at a time (0: all
// at once) and returns the errors' count and the first.
func parallel(n, limit int, f func(i int) error) (int, error) {
	var wg sync.WaitGroup
	var errs atomic.Int64
	var first atomic.Value
	var sem chan struct{}
	if limit > 0 {
		sem = make(chan struct{}, limit)
	}
	for i := range n {
		if sem != nil {
			sem <- struct{}{}
		}
		wg.Go(func() {
			if err := f(i); err != nil {
				errs.Add(1)
				first.CompareAndSwap(nil, err)
			}
			if sem != nil {
				<-sem
			}
		})
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return int(errs.Load()), err
}

func p95(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[(len(lat)*95+99)/100-1]
}

// polling measures design (a) against base, the server processes being
// pids().
func (be *bench) polling(name, base string, pids func() []int) row {
	b, n := be.b, be.n
	ctx := b.Context()
	r := row{name: name}
	m := NewMeter()
	ps := make([]*poller, n)
	for i := range ps {
		ps[i] = newPoller(m, be.pool)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	smp := StartSampler(sctx, 100*time.Millisecond, pids()...)

	// Every device polls at once, on a full TLS handshake: the worst case
	// of a restart (in practice polls spread over the interval).
	c0, _ := smp.Now()
	t0 := time.Now()
	var firstStorm error
	r.stormErrs, firstStorm = parallel(n, 0, func(i int) error { _, err := ps[i].poll(ctx, base); return err })
	if firstStorm != nil {
		b.Logf("%s: %d of %d polls at once failed, first: %v", name, r.stormErrs, n, firstStorm)
	}
	r.storm = time.Since(t0)
	c1, rss0 := smp.Now()
	r.stormCPU, _ = smp.Peak(t0, time.Now())
	r.stormCPU = max(r.stormCPU, (c1-c0).Seconds()/r.storm.Seconds())
	r.stormRSSMB = float64(rss0) / 1e6
	// Who failed polls again, spread out.
	parallel(n, 64, func(i int) error { _, err := ps[i].poll(ctx, base); return err })

	// One idle round: each device polls once (304) at a random moment of
	// the window, on a new TCP connection, resuming its TLS session.
	cpu0, _ := smp.Now()
	b0, s0 := m.Snapshot()
	errs, first := be.round(ps, base, nil, time.Time{})
	if errs > 0 {
		b.Logf("%s: %d of %d idle polls failed, first: %v", name, errs, n, first)
	}
	b1, s1 := m.Snapshot()
	cpu1, rss := smp.Now()
	polls := float64(n - errs)
	r.idleB = float64(b1-b0) / polls
	r.idleIP = r.idleB + float64(s1-s0)*IPHeader/polls
	perMonth := float64(month / pollInterval)
	r.monthMB, r.monthIPMB = r.idleB*perMonth/1e6, r.idleIP*perMonth/1e6
	r.cpu10k = (cpu1 - cpu0).Seconds() / polls * 10000 / pollInterval.Seconds()
	r.rssMB = float64(rss) / 1e6

	// A publish, then the same round: each device finds the new
	// timestamp at its next poll.
	lat := make([]time.Duration, n)
	pub := be.publish()
	var firstPub error
	r.pubErrs, firstPub = be.round(ps, base, lat, pub)
	if firstPub != nil {
		b.Logf("%s: %d polls after the publish failed, first: %v", name, r.pubErrs, firstPub)
	}
	r.p95 = p95(lat)
	r.p95Real = time.Duration(float64(r.p95) / float64(be.window) * float64(pollInterval))
	b.Logf("%s: idle poll %.0f B (%.0f with IP/TCP), %.2f%% of a core per 10k devices at %s, RSS %.1f MB; all-at-once %s with %d errors, peak %.0f%% CPU; p95 %s at a %s interval",
		name, r.idleB, r.idleIP, r.cpu10k*100, pollInterval, r.rssMB, r.storm.Round(time.Millisecond), r.stormErrs, r.stormCPU*100, r.p95.Round(time.Millisecond), be.window)
	return r
}

// round makes each device poll once at a uniformly random moment of the
// window. With lat, it records each device's time from pub until it got
// the new timestamp (polling again one window later if it did not).
func (be *bench) round(ps []*poller, base string, lat []time.Duration, pub time.Time) (int, error) {
	ctx := be.b.Context()
	start := time.Now()
	return parallel(len(ps), 0, func(i int) error {
		at := start.Add(time.Duration(mrand.Int64N(int64(be.window))))
		for {
			time.Sleep(time.Until(at))
			changed, err := ps[i].poll(ctx, base)
			if err != nil {
				return err
			}
			if lat == nil || changed {
				if lat != nil {
					lat[i] = time.Since(pub)
				}
				return nil
			}
			at = at.Add(be.window) // a cache served the old file
		}
	})
}

// startNginx runs nginx in front of plumb serve with proxy_cache, as a CDN
// would: TLS to devices with the docs/nginx.md session settings; it keeps
// timestamp.json for ttl (its Cache-Control no-cache is overridden, the
// CDN's usual "micro-cache") and revalidates it with the origin by a
// conditional request; versioned metadata and targets follow the origin's
// Cache-Control (immutable).
func (be *bench) startNginx(nginx string, ttl time.Duration) (pids []int, base string, stop func()) {
	b := be.b
	tmp := b.TempDir()
	addr := freeAddr(b)
	tlsDir := filepath.Join(be.dir, "tls")
	conf := fmt.Sprintf(`daemon off;
master_process off;
user root;
worker_processes 1;
worker_rlimit_nofile %[5]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections %[5]d; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    proxy_cache_path %[1]s/cache levels=1 keys_zone=plumb:4m max_size=256m;
    upstream origin { server %[3]s; keepalive 32; }
    server {
        listen %[2]s ssl;
        ssl_certificate     %[4]s/server.pem;
        ssl_certificate_key %[4]s/server.key;
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_timeout 1d;
        ssl_conf_command    NumTickets 1;
        server_tokens       off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_ssl_session_reuse on;
        proxy_ssl_trusted_certificate %[4]s/ca.pem;
        proxy_ssl_verify on;
        proxy_ssl_name localhost;
        proxy_cache plumb;
        proxy_cache_revalidate on;
        proxy_cache_lock on;
        proxy_cache_use_stale updating error timeout;
        location = /metadata/timestamp.json {
            proxy_pass https://origin;
            proxy_ignore_headers Cache-Control;
            proxy_cache_valid 200 %[6]ds;
        }
        location / {
            proxy_pass https://origin;
        }
    }
}
`, tmp, addr, be.addr, tlsDir, 4*be.n+1024, int(ttl.Seconds()))
	confPath := filepath.Join(tmp, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", confPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	waitListening(b, addr)
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if log, _ := os.ReadFile(filepath.Join(tmp, "error.log")); len(log) > 0 {
			b.Logf("nginx error.log (last 1 KB): %s", tail(log, 1024))
		}
	}
	return []int{cmd.Process.Pid}, "https://" + addr, stop
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// held is what designs (b) and (c) share: every device's channel and its
// poller (with a ticket from one earlier poll).
type held struct {
	up       atomic.Int64 // channels connected
	downs    atomic.Int64 // see heldFigures
	lat      []time.Duration
	got      atomic.Int64
	pub      atomic.Int64 // unix nanos of the publish
	pErrs    atomic.Int64 // failed pulls (tried again)
	firstErr atomic.Value
}

// downCounter is a slog handler counting updater/wake's "channel down"
// records (a drop, or a failed attempt to reconnect).
type downCounter struct{ n *atomic.Int64 }

func (d *downCounter) Enabled(context.Context, slog.Level) bool { return true }
func (d *downCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "wake channel down") {
		d.n.Add(1)
	}
	return nil
}
func (d *downCounter) WithAttrs([]slog.Attr) slog.Handler { return d }
func (d *downCounter) WithGroup(string) slog.Handler      { return d }

// pull is a nudged device's conditional GET of timestamp.json after a
// random wait in [0, jitter); it records the time from the publish. A
// failed pull is tried twice more, 1-3 s apart (plumbd would poll again
// at its next interval).
func (be *bench) pull(h *held, p *poller, i int, jitter time.Duration) {
	if jitter > 0 {
		time.Sleep(mrand.N(jitter))
	}
	for try := 0; try < 3; try++ {
		changed, err := p.poll(be.b.Context(), "https://"+be.addr)
		if err == nil {
			if changed && h.lat[i] == 0 {
				h.lat[i] = time.Duration(time.Now().UnixNano() - h.pub.Load())
				h.got.Add(1)
			}
			return
		}
		h.pErrs.Add(1)
		h.firstErr.CompareAndSwap(nil, err)
		time.Sleep(time.Second + mrand.N(2*time.Second))
	}
}

// heldFigures measures the idle window, the publish and the storm for a
// held design; restart restarts its server and returns its new PIDs.
func (be *bench) heldFigures(r *row, h *held, m *Meter, smp *Sampler, publish func() time.Time, restart func() []int) {
	b, n := be.b, be.n
	// Idle: every channel connected, nothing published.
	time.Sleep(be.keep / 2)
	cpu0, _ := smp.Now()
	b0, s0 := m.Snapshot()
	t0 := time.Now()
	time.Sleep(3 * be.keep)
	b1, s1 := m.Snapshot()
	cpu1, rss := smp.Now()
	intervals := float64(n) * time.Since(t0).Seconds() / be.keep.Seconds()
	r.idleB = float64(b1-b0) / intervals
	r.idleIP = r.idleB + float64(s1-s0)*IPHeader/intervals
	perMonth := float64(month / natInterval)
	r.monthMB, r.monthIPMB = r.idleB*perMonth/1e6, r.idleIP*perMonth/1e6
	// CPU per keep-alive, scaled to 10,000 devices at the NAT-safe interval.
	r.cpu10k = (cpu1 - cpu0).Seconds() / intervals * 10000 / natInterval.Seconds()
	r.rssMB = float64(rss) / 1e6

	h.lat = make([]time.Duration, n)
	pub := publish()
	h.pub.Store(pub.UnixNano())
	deadline := time.Now().Add(2*time.Minute + time.Duration(n)*time.Millisecond*5)
	for h.got.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r.pubErrs = n - int(h.got.Load())
	if e := h.firstErr.Load(); e != nil {
		b.Logf("%s: %d pulls failed (tried again), first: %v", r.name, h.pErrs.Load(), e)
	}
	lat := slices.Clone(h.lat)
	for i, l := range lat {
		if l == 0 {
			lat[i] = time.Hour // never: counts against the p95
		}
	}
	r.p95 = p95(lat)
	r.p95Real = r.p95

	// Restart the server: every channel drops and comes back.
	downs0 := h.downs.Load()
	pids := restart()
	smp.SetPIDs(pids...)
	ts := time.Now()
	deadline = ts.Add(5*time.Minute + time.Duration(n)*10*time.Millisecond)
	for h.up.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r.storm = time.Since(ts)
	// downs counts attempts to reconnect (MQTT) or drops and failed
	// attempts (SSE): one per device is the drop, or the attempt that
	// worked.
	r.stormErrs = max(0, int(h.downs.Load()-downs0-int64(n)))
	var stormRSS int64
	r.stormCPU, stormRSS = smp.Peak(ts, time.Now())
	r.stormRSSMB = float64(stormRSS) / 1e6
	if h.up.Load() < int64(n) {
		b.Logf("%s: only %d of %d reconnected within %s", r.name, h.up.Load(), n, r.storm.Round(time.Second))
	}
	b.Logf("%s: idle %.0f B per %s keep-alive (%.0f with IP/TCP), %.3f%% of a core per 10k devices at %s, RSS %.1f MB; publish to 95%% pulling %s (%d never); restart: all %d back in %s, %d failed attempts, peak %.0f%% CPU, RSS %.1f MB",
		r.name, r.idleB, be.keep, r.idleIP, r.cpu10k*100, natInterval, r.rssMB, r.p95.Round(time.Millisecond), r.pubErrs, n, r.storm.Round(time.Millisecond), r.stormErrs, r.stormCPU*100, r.stormRSSMB)
}

// warm gives every poller a TLS ticket from plumb serve (one poll each).
func (be *bench) warm(ps []*poller) {
	if errs, first := parallel(len(ps), 128, func(i int) error { _, err := ps[i].poll(be.b.Context(), "https://"+be.addr); return err }); errs > 0 {
		be.b.Fatalf("warm-up polls: %d failed, first: %v", errs, first)
	}
}

// mqtt measures design (b): mosquitto over TLS (anonymous: a production
// broker would ask for each device's client certificate, which costs
// bytes at connect only), devices subscribed to one topic with QoS 0, a
// retained QoS 1 "new timestamp" message as the nudge.
func (be *bench) mqtt(mosq string) row {
	b, n := be.b, be.n
	r := row{name: "mqtt: mosquitto, TLS"}
	tmp := b.TempDir()
	addr := freeAddr(b)
	host, port, _ := net.SplitHostPort(addr)
	tlsDir := filepath.Join(be.dir, "tls")
	conf := fmt.Sprintf("user root\nlistener %s %s\ncertfile %s/server.pem\nkeyfile %s/server.key\nallow_anonymous true\npersistence false\nmax_keepalive 65535\nlog_dest file %s/mosquitto.log\nlog_type error\nlog_type warning\n", port, host, tlsDir, tlsDir, tmp)
	confPath := filepath.Join(tmp, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	var cmd *exec.Cmd
	start := func() []int {
		cmd = exec.Command(mosq, "-c", confPath)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitListening(b, addr)
		return []int{cmd.Process.Pid}
	}
	stop := func() {
		if cmd != nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			cmd = nil
		}
	}
	defer func() {
		stop()
		if log, _ := os.ReadFile(filepath.Join(tmp, "mosquitto.log")); len(log) > 0 {
			b.Logf("mosquitto.log (last 1 KB): %s", tail(log, 1024))
		}
	}()
	pids := start()

	pm := NewMeter() // the pulls' connections, not counted as idle
	ps := make([]*poller, n)
	for i := range ps {
		ps[i] = newPoller(pm, be.pool)
	}
	be.warm(ps)

	m := NewMeter()
	h := &held{}
	h.lat = make([]time.Duration, n)
	sctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	smp := StartSampler(sctx, 100*time.Millisecond, pids...)
	clients := make([]mqtt.Client, n)
	newClient := func(i int, id string, onMsg mqtt.MessageHandler, meter *Meter) mqtt.Client {
		cfg := fetch.TLSConfig(be.pool, tls.NewLRUClientSessionCache(1))
		cfg.ServerName = host
		o := mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(id).
			SetKeepAlive(be.keep).SetPingTimeout(30 * time.Second).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectTimeout(30 * time.Second).SetOrderMatters(false).
			SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
				c, err := meter.DialContext(b.Context(), "tcp", u.Host)
				if err != nil {
					return nil, err
				}
				tc := tls.Client(c, cfg)
				if err := tc.HandshakeContext(b.Context()); err != nil {
					c.Close()
					return nil, err
				}
				return tc, nil
			})
		if onMsg != nil {
			o.SetOnConnectHandler(func(c mqtt.Client) {
				c.Subscribe(topic, 0, onMsg)
				h.up.Add(1)
			})
			// Reconnect as updater/wake does: full jitter, the bound
			// doubling from 30 s (paho's own reconnect retries at once,
			// then after 1 s, 2 s... with no jitter).
			o.SetConnectionLostHandler(func(c mqtt.Client, _ error) {
				h.up.Add(-1)
				go func() {
					for bound := 30 * time.Second; b.Context().Err() == nil; bound = min(2*bound, 10*time.Minute) {
						time.Sleep(mrand.N(bound))
						h.downs.Add(1) // an attempt
						if tok := c.Connect(); tok.Wait() && tok.Error() == nil {
							return
						}
					}
				}()
			})
		}
		return mqtt.NewClient(o)
	}
	var last sync.Map // device -> the payload it heard last
	for i := range clients {
		clients[i] = newClient(i, fmt.Sprintf("dev-%06d", i), func(_ mqtt.Client, msg mqtt.Message) {
			tag := string(msg.Payload())
			prev, _ := last.Swap(i, tag)
			if prev != nil && prev.(string) != tag {
				// The broker cannot pace its fan-out: the device
				// spreads its pull over the spread plumb serve uses.
				go be.pull(h, ps[i], i, be.spread())
			}
		}, m)
	}
	ts := time.Now()
	parallel(n, 256, func(i int) error {
		tok := clients[i].Connect()
		tok.Wait()
		return tok.Error()
	})
	for h.up.Load() < int64(n) && time.Since(ts) < 5*time.Minute {
		time.Sleep(20 * time.Millisecond)
	}
	b.Logf("mqtt: %d of %d connected and subscribed in %s", h.up.Load(), n, time.Since(ts).Round(time.Millisecond))

	pubc := newClient(-1, "publisher", nil, NewMeter())
	if tok := pubc.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatalf("mqtt publisher: %v", tok.Error())
	}
	pubNow := func(tag string) {
		if tok := pubc.Publish(topic, 1, true, tag); tok.Wait() && tok.Error() != nil {
			b.Fatalf("mqtt publish: %v", tok.Error())
		}
	}
	pubNow(currentETag(be)) // what the devices know now (retained)
	time.Sleep(time.Second)

	be.heldFigures(&r, h, m, smp, func() time.Time {
		t := be.publish()
		pubNow(currentETag(be))
		return t
	}, func() []int {
		pubc.Disconnect(0)
		stop()
		p := start()
		pubc = newClient(-1, "publisher", nil, NewMeter())
		if tok := pubc.Connect(); tok.Wait() && tok.Error() != nil {
			b.Fatalf("mqtt publisher: %v", tok.Error())
		}
		pubNow(currentETag(be)) // the broker keeps nothing (persistence false)
		return p
	})
	pubc.Disconnect(0)
	parallel(n, 256, func(i int) error { clients[i].Disconnect(0); return nil })
	return r
}

// spread is how long plumb serve takes to nudge n devices at its default
// rate (server.DefaultWakeRate a second).
func (be *bench) spread() time.Duration {
	return time.Duration(float64(be.n) / server.DefaultWakeRate * float64(time.Second))
}

// currentETag is the served timestamp.json's ETag, as a device sees it.
func currentETag(be *bench) string {
	p := newPoller(NewMeter(), be.pool)
	if _, err := p.poll(be.b.Context(), "https://"+be.addr); err != nil {
		be.b.Fatal(err)
	}
	return p.etag
}

// sse measures design (c): plumb serve's wake stream, each device
// authenticated by mutual TLS with its own P-256 identity key (joining
// with the organization's join token on its first connection), through
// updater/wake as plumbd runs it.
func (be *bench) sse() row {
	b, n := be.b, be.n
	r := row{name: "held: plumb serve SSE"}
	tok, err := os.ReadFile(filepath.Join(be.dir, server.JoinTokenFile))
	if err != nil {
		b.Fatal(err)
	}
	join := strings.TrimSpace(string(tok))
	h := &held{}
	h.lat = make([]time.Duration, n)
	pm := NewMeter()
	ps := make([]*poller, n)
	for i := range ps {
		ps[i] = newPoller(pm, be.pool)
	}
	be.warm(ps)

	m := NewMeter()
	sctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	smp := StartSampler(sctx, 100*time.Millisecond, be.servePIDs()...)
	fleet, err := sim.New(sim.Options{Base: "https://" + be.addr + "/", Roots: be.pool, JoinToken: join, N: n, Hardware: "qemu-x86_64", Version: "1.0.0"})
	if err != nil {
		b.Fatal(err)
	}
	chans := make([]*wake.Channel, n)
	for i := range chans {
		// plumbd's set-up (updater/agent/setup.go): the TUF transport,
		// changed by wake.Transport, with the identity's client
		// certificate and the join token (report.DeviceClient).
		tr := wake.Transport(fetch.NewTransport(fetch.TLSConfig(be.pool, nil)))
		tr.DialContext = m.DialContext
		tr.Proxy = nil
		d := fleet.Devices[i]
		hc, err := report.DeviceClient(&http.Client{Transport: tr}, d.Identity, join)
		if err != nil {
			b.Fatal(err)
		}
		c, err := wake.New(wake.Options{
			URL: wake.URL("https://"+be.addr, d.ID), Client: hc, Heartbeat: be.keep,
			Log: slog.New(&downCounter{n: &h.downs}),
		})
		if err != nil {
			b.Fatal(err)
		}
		chans[i] = c
	}
	ts := time.Now()
	for i, c := range chans {
		if i%256 == 0 {
			time.Sleep(100 * time.Millisecond) // devices boot over time, not in one instant
		}
		go c.Run(sctx)
		go func() {
			for {
				select {
				case <-sctx.Done():
					return
				case <-c.C():
					go be.pull(h, ps[i], i, 0) // the server paced the nudges
				}
			}
		}()
	}
	// One goroutine counts the channels up.
	go func() {
		for sctx.Err() == nil {
			up := 0
			for _, c := range chans {
				if c.Up() {
					up++
				}
			}
			h.up.Store(int64(up))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for h.up.Load() < int64(n) && time.Since(ts) < 5*time.Minute {
		time.Sleep(20 * time.Millisecond)
	}
	b.Logf("sse: %d of %d connected (joined on first connection) in %s", h.up.Load(), n, time.Since(ts).Round(time.Millisecond))
	be.heldFigures(&r, h, m, smp, be.publish, func() []int {
		be.stopServe()
		be.startServe()
		return be.servePIDs()
	})
	return r
}

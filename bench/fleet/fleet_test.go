package fleet

import (
	"bufio"
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/bench/sim"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

// The goal (issue 12): 100,000 devices polling every 5 minutes.
const (
	goalDevices = 100000
	goalPeriod  = 5 * 60 // seconds
	goalP99     = 200 * time.Millisecond
)

// Cores: the server side and the load generator.
const (
	serverCPU = 0
	clientCPU = 1
)

func env(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkFleet(b *testing.B) {
	configs := strings.Split(os.Getenv("FLEET_CONFIGS"), ",")
	if os.Getenv("FLEET_CONFIGS") == "" {
		configs = []string{"sqlite", "postgres", "postgres-2"}
	}
	bin := plumbBinary(b)
	pin := os.Getenv("FLEET_PIN") != "0" && runtime.NumCPU() >= 2
	if pin {
		pinSelf(b, clientCPU)
	}
	for _, c := range configs {
		b.Run(c, func(b *testing.B) {
			for b.Loop() {
				runConfig(b, bin, c, pin)
			}
		})
	}
}

// plumbBinary is $PLUMB, or plumb built from this tree.
func plumbBinary(b *testing.B) string {
	if p := os.Getenv("PLUMB"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "plumb")
	cmd := exec.Command("go", "build", "-o", out, "github.com/plumb-os/plumb/cmd/plumb")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build plumb: %v\n%s", err, msg)
	}
	return out
}

// pinSelf moves every thread of this process to cpu (threads made later
// inherit it from the thread that makes them).
func pinSelf(b *testing.B, cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			b.Fatalf("pinning thread %d to CPU %d: %v", tid, cpu, err)
		}
	}
}

// pinTree pins the process pid and its children alive now to cpu.
func pinTree(b *testing.B, pid, cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := sim.ReadProc(n); err == nil && (n == pid || p.PPID == pid) {
			if err := unix.SchedSetaffinity(n, &set); err != nil {
				b.Fatalf("pinning process %d to CPU %d: %v", n, cpu, err)
			}
		}
	}
}

// serveProc is a running `plumb serve`.
type serveProc struct {
	pid int
	url string
}

// startServe starts plumb serve on 127.0.0.1:0 (pinned to serverCPU when
// pin) and ends it by PID when the benchmark ends.
func startServe(b *testing.B, bin, dir, db string, pin bool, profile string) *serveProc {
	args := []string{"serve", dir, "--addr", "127.0.0.1:0", "--join-rate", "100000"}
	if db != "" {
		args = append(args, "--db", db)
	}
	if profile != "" {
		args = append(args, "--cpu-profile", profile)
	}
	cmd := exec.Command(bin, args...)
	if pin {
		cmd = exec.Command("taskset", append([]string{"-c", fmt.Sprint(serverCPU), bin}, args...)...)
	}
	logf, err := os.Create(filepath.Join(b.TempDir(), "serve.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting plumb serve: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "URL:" {
				urlc <- f[1]
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case u := <-urlc:
		return &serveProc{pid: cmd.Process.Pid, url: u}
	case <-done:
		log, _ := os.ReadFile(logf.Name())
		b.Fatalf("plumb serve ended before serving:\n%s", log)
	case <-time.After(60 * time.Second):
		b.Fatal("plumb serve printed no URL within 60 s")
	}
	return nil
}

// makeDir is a serve directory with a TUF repository (timestamp.json to
// poll).
func makeDir(b *testing.B) string {
	repo := fetchtest.NewRepo(b)
	repo.AddTarget("qemu-x86_64/1.0.0/rootfs.sqfs", []byte("rootfs"), map[string]string{"version": "1.0.0"})
	repo.Publish()
	dir := b.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "repository"), os.DirFS(repo.Dir)); err != nil {
		b.Fatal(err)
	}
	return dir
}

// sample is the server side's and the load generator's resources at one
// moment.
type sample struct {
	at            time.Time
	serve         []sim.Proc
	pg, client    sim.Proc
	dbBytes       int64
	histBytes     int64 // the history table (events) and its indexes
	checkins, rep int64
}

// historyBytes is the size of the history table, events, with its
// indexes: SQLite's dbstat pages, PostgreSQL's pg_total_relation_size
// (dead rows not yet vacuumed included).
func historyBytes(ctx context.Context, st *store.Store) (int64, error) {
	q := `SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'events')`
	if st.Dialect() == store.Postgres {
		q = `SELECT pg_total_relation_size('events')`
	}
	var n int64
	err := st.DB().QueryRowContext(ctx, q).Scan(&n)
	return n, err
}

func runConfig(b *testing.B, bin, config string, pin bool) {
	ctx := context.Background()
	n := int(env("FLEET_DEVICES", 10000))
	phase := time.Duration(env("FLEET_SECONDS", 30) * float64(time.Second))
	rate := env("FLEET_RATE", goalDevices/goalPeriod)
	frac := env("FLEET_REPORTS", 0.1)
	dir := makeDir(b)
	db, procs := "", 1
	var pg *testutil.PG
	switch config {
	case "sqlite":
	case "postgres", "postgres-2":
		pg = testutil.Postgres(b)
		if pin {
			pinTree(b, pg.PID(), serverCPU)
		}
		db = pg.DSN
		if config == "postgres-2" {
			procs = 2
		}
	default:
		b.Fatalf("FLEET_CONFIGS: unknown configuration %q: expected sqlite, postgres or postgres-2", config)
	}
	var servers []*serveProc
	var bases []string
	for i := range procs {
		prof := ""
		if d := os.Getenv("FLEET_PROFILE"); d != "" {
			prof = filepath.Join(d, fmt.Sprintf("%s-%d.pprof", config, i))
		}
		s := startServe(b, bin, dir, db, pin, prof)
		servers = append(servers, s)
		bases = append(bases, s.url)
	}
	st, err := store.Open(ctx, cmp.Or(db, filepath.Join(dir, "fleet.db")), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tok, err := os.ReadFile(filepath.Join(dir, server.JoinTokenFile))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	fl, err := sim.New(sim.Options{Bases: bases, Roots: roots, JoinToken: strings.TrimSpace(string(tok)), N: n, Hardware: "qemu-x86_64", Version: "1.0.0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %d devices made (keys, certificates, clients) in %v", config, n, time.Since(t0).Round(time.Millisecond))

	take := func(r *sim.Result) sample {
		s := sample{at: time.Now()}
		for _, p := range servers {
			ps, err := sim.ReadProc(p.pid)
			if err != nil {
				b.Fatal(err)
			}
			s.serve = append(s.serve, ps)
		}
		if pg != nil {
			if s.pg, err = sim.ReadTree(pg.PID()); err != nil {
				b.Fatal(err)
			}
		}
		if s.client, err = sim.Self(); err != nil {
			b.Fatal(err)
		}
		if s.dbBytes, err = st.Size(ctx); err != nil {
			b.Fatal(err)
		}
		if s.histBytes, err = historyBytes(ctx, st); err != nil {
			b.Fatal(err)
		}
		if r != nil {
			s.checkins, s.rep = r.CheckIns, r.Reports
		}
		return s
	}
	serveCPU := func(a, z sample) time.Duration {
		var d time.Duration
		for i := range z.serve {
			d += z.serve[i].CPU - a.serve[i].CPU
		}
		return d
	}

	// Join: one report per device, over a full TLS handshake with its
	// client certificate.
	s0 := take(nil)
	if err := fl.Join(ctx, 64); err != nil {
		b.Fatalf("join: %v", err)
	}
	s1 := take(nil)
	joinRate := float64(n) / s1.at.Sub(s0.at).Seconds()
	// Every device polls once (200 with the ETag, and a TLS ticket for
	// the TUF client).
	warm := fl.Run(ctx, sim.RunOptions{Duration: time.Hour, Concurrency: 64, Limit: int64(n)})
	if warm.Errors > 0 {
		b.Fatalf("first polls: %d errors, first %v", warm.Errors, warm.FirstErr)
	}

	// Phase 1: as fast as the server takes them.
	a := take(nil)
	sat := fl.Run(ctx, sim.RunOptions{Duration: phase, Concurrency: 64, ReportFraction: frac})
	z := take(sat)
	if sat.Errors > 0 {
		b.Fatalf("saturation: %d errors of %d check-ins, first %v", sat.Errors, sat.CheckIns+sat.Errors, sat.FirstErr)
	}
	ci := float64(sat.CheckIns)
	srvCPU := serveCPU(a, z).Seconds()
	pgCPU := (z.pg.CPU - a.pg.CPU).Seconds()
	cliCPU := (z.client.CPU - a.client.CPU).Seconds()
	el := z.at.Sub(a.at).Seconds()

	// Phase 2: the goal's rate.
	a2 := take(nil)
	tgt := fl.Run(ctx, sim.RunOptions{Rate: rate, Duration: phase, Concurrency: 2048, ReportFraction: frac})
	z2 := take(tgt)
	if tgt.Errors > 0 {
		b.Fatalf("at %g/s: %d errors of %d check-ins, first %v", rate, tgt.Errors, tgt.CheckIns+tgt.Errors, tgt.FirstErr)
	}
	el2 := z2.at.Sub(a2.at).Seconds()
	cores2 := (serveCPU(a2, z2) + z2.pg.CPU - a2.pg.CPU).Seconds() / el2
	var rss int64
	for _, p := range z2.serve {
		rss += p.HWM
	}
	reports := sat.Reports + tgt.Reports
	perReport := float64(z2.dbBytes-s1.dbBytes) / float64(reports)
	histPerReport := float64(z2.histBytes-s1.histBytes) / float64(reports)
	// A device reports frac of its polls: at a 5-minute poll, 288 a day.
	perDay := histPerReport * frac * 86400 / goalPeriod

	b.Logf("%s: join %.0f devices/s; saturation %d check-ins (%d reports) in %.1f s: server %.1f%%, PG %.1f%%, client %.1f%% of a core; poll p50 %v p99 %v, report p50 %v p99 %v",
		config, joinRate, sat.CheckIns, sat.Reports, el, 100*srvCPU/el, 100*pgCPU/el, 100*cliCPU/el,
		sat.Poll.P50(), sat.Poll.P99(), sat.Report.P50(), sat.Report.P99())
	b.Logf("%s: at %g/s: %d check-ins (%d reports, %d polls answered 304, %d late starts) in %.1f s; check-in p50 %v p99 %v max %v; server side %.2f cores; DB %d -> %d bytes",
		config, rate, tgt.CheckIns, tgt.Reports, tgt.NotModified, tgt.Late, el2, tgt.CheckIn.P50(), tgt.CheckIn.P99(), tgt.CheckIn.Max(), cores2, s1.dbBytes, z2.dbBytes)
	b.Logf("%s: history (events and its indexes) %d -> %d bytes for %d reports", config, s1.histBytes, z2.histBytes, reports)

	b.ReportMetric(float64(n), "devices")
	b.ReportMetric(joinRate, "joins/s")
	b.ReportMetric(ci/el, "max-ci/s")
	b.ReportMetric(100*(srvCPU+pgCPU)/el, "srv%core@max")
	b.ReportMetric(srvCPU/ci*1000, "serveCPUs/1kci")
	b.ReportMetric(pgCPU/ci*1000, "pgCPUs/1kci")
	b.ReportMetric(cliCPU/ci*1000, "cliCPUs/1kci")
	// What one core of the server side would take, from its CPU per
	// check-in (the load generator may have been the limit above).
	b.ReportMetric(ci/(srvCPU+pgCPU), "ci/s/srv-core")
	b.ReportMetric(100*float64(sat.NotModified+tgt.NotModified)/float64(sat.CheckIns+tgt.CheckIns), "304%")
	b.ReportMetric(float64(tgt.CheckIns)/el2, "ci/s@goal")
	b.ReportMetric(float64(tgt.Reports)/el2, "rep/s@goal")
	b.ReportMetric(float64(tgt.CheckIn.P50())/1e6, "p50-ms@goal")
	b.ReportMetric(float64(tgt.CheckIn.P99())/1e6, "p99-ms@goal")
	b.ReportMetric(cores2, "srv-cores@goal")
	b.ReportMetric(cores2/(rate*goalPeriod/1000), "srv-cores/1kdev")
	b.ReportMetric(float64(rss)/(1<<20), "serveRSS-MB")
	b.ReportMetric(float64(z2.pg.RSS)/(1<<20), "pgRSS-MB")
	b.ReportMetric(perReport, "DB-B/report")
	b.ReportMetric(histPerReport, "hist-B/report")
	b.ReportMetric(perDay, "hist-B/dev/day")
	b.ReportMetric(frac, "report-frac")
	b.ReportMetric(rate, "goal-ci/s")
	b.ReportMetric(0, "ns/op")
}

package sim

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

// rig is an in-process fleet server over real HTTPS on 127.0.0.1 (SQLite).
type rig struct {
	base  string
	roots *x509.CertPool
	join  string
	srv   *server.Server
}

func newRig(t *testing.T) *rig {
	repo := fetchtest.NewRepo(t)
	repo.AddTarget("qemu-x86_64/1.0.0/rootfs.sqfs", []byte("rootfs"), map[string]string{"version": "1.0.0"})
	repo.Publish()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "repository"), os.DirFS(repo.Dir)); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Dir: dir, Fleet: &server.FleetOptions{Bootstrap: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	pem, err := os.ReadFile(srv.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tok, err := os.ReadFile(filepath.Join(dir, server.JoinTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{base: "https://" + l.Addr().String() + "/", roots: roots, join: strings.TrimSpace(string(tok)), srv: srv}
}

// TestFleet: simulated devices join with the join token over mutual TLS,
// poll (200, then 304 with the ETag), and their reports land in the
// database, each as the device it claims; Run counts what it did.
func TestFleet(t *testing.T) {
	r := newRig(t)
	f, err := New(Options{Base: r.base, Roots: r.roots, JoinToken: r.join, N: 5, Hardware: "qemu-x86_64", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := f.Join(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Devices {
		got, err := r.srv.Store().Device(ctx, d.ID)
		if err != nil {
			t.Fatalf("device %s after joining: %v", d.ID, err)
		}
		if got.Version != "1.0.0" || got.Hardware != "qemu-x86_64" {
			t.Errorf("device %s: hardware %q version %q, want qemu-x86_64 1.0.0", d.ID, got.Hardware, got.Version)
		}
	}
	d := f.Devices[0]
	for i, want := range []int{http.StatusOK, http.StatusNotModified} {
		code, err := d.Poll(ctx)
		if err != nil || code != want {
			t.Fatalf("poll %d: %d %v, want %d", i, code, err, want)
		}
		d.Drop()
	}

	// A device without the join token is refused (and listed pending).
	lone, err := New(Options{Base: r.base, Roots: r.roots, N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := lone.Devices[0].Report(ctx); !IsStatus(err, http.StatusForbidden) {
		t.Errorf("report without a join token: %v, want a 403", err)
	}

	res := f.Run(ctx, RunOptions{Duration: 300 * time.Millisecond, Concurrency: 2, ReportFraction: 0.5})
	if res.Errors != 0 {
		t.Fatalf("run: %d errors, first %v", res.Errors, res.FirstErr)
	}
	if res.CheckIns == 0 || res.Poll.Count() != res.CheckIns || res.Report.Count() != res.Reports {
		t.Fatalf("run: %d check-ins, %d polls, %d reports timed of %d", res.CheckIns, res.Poll.Count(), res.Report.Count(), res.Reports)
	}
	if lo, hi := res.CheckIns/2-1, res.CheckIns/2+1; res.Reports < lo || res.Reports > hi {
		t.Errorf("run: %d reports of %d check-ins, want half", res.Reports, res.CheckIns)
	}
	ev, err := r.srv.Store().Events(ctx, d.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) < 2 {
		t.Errorf("device %s: %d history entries, want its join and at least one update phase", d.ID, len(ev))
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	if r.P99() != 0 {
		t.Fatal("an empty recorder's p99 is not 0")
	}
	for i := 1; i <= 100; i++ {
		r.Add(time.Duration(i) * time.Millisecond)
	}
	if r.P50() != 50*time.Millisecond || r.P99() != 99*time.Millisecond || r.Max() != 100*time.Millisecond || r.Count() != 100 {
		t.Errorf("p50 %v p99 %v max %v count %d, want 50ms 99ms 100ms 100", r.P50(), r.P99(), r.Max(), r.Count())
	}
}

func TestReadProc(t *testing.T) {
	p, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.HWM < p.RSS {
		t.Errorf("RSS %d, peak %d: want 0 < RSS <= peak", p.RSS, p.HWM)
	}
	// Burn CPU until the tick-granular counter moves.
	x := 0
	for q, _ := Self(); q.CPU <= p.CPU; q, _ = Self() {
		for i := range 1 << 20 {
			x += i
		}
	}
	_ = x
	if _, err := ReadProc(-1); err == nil {
		t.Error("ReadProc(-1): no error")
	}
}

// TestReadTree: a process and its child are summed.
func TestReadTree(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	child, err := ReadProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if child.PPID != os.Getpid() {
		t.Fatalf("child's parent %d, want %d", child.PPID, os.Getpid())
	}
	tree, err := ReadTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree.RSS < self.RSS+child.RSS/2 || tree.CPU < self.CPU {
		t.Errorf("tree RSS %d CPU %v; want at least this process's (%d, %v) and the child's RSS (%d)", tree.RSS, tree.CPU, self.RSS, self.CPU, child.RSS)
	}
}

package agent

import (
	"context"
	"crypto/x509"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/servetest"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/slot"
	"github.com/plumb-os/plumb/updater/wake"
)

// countingRepo is a repository with no release newer than the running
// one that reports each Refresh. A fake at a seam we own: the wake-up
// channel over real HTTPS is tested in updater/wake and server; this
// checks only what Run does with its signals.
type countingRepo struct{ refreshed chan struct{} }

func (r *countingRepo) Refresh(context.Context) error    { r.refreshed <- struct{}{}; return nil }
func (r *countingRepo) Targets() ([]fetch.Target, error) { return nil, nil }
func (r *countingRepo) DownloadFile(context.Context, string, *os.File, int64, io.Writer) (int64, error) {
	return 0, io.EOF
}
func (r *countingRepo) RecordRelease(string) error       { return nil }
func (r *countingRepo) RecordedRelease() (string, error) { return "", nil }

// fakeWake is the wake-up channel (a seam we own): c nudges, up says
// whether it is connected.
type fakeWake struct {
	c  chan struct{}
	up atomic.Bool
}

func (w *fakeWake) C() <-chan struct{} { return w.c }
func (w *fakeWake) Up() bool           { return w.up.Load() }

func wakeAgent(t *testing.T, w *fakeWake) (*Agent, *countingRepo) {
	t.Helper()
	esp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(esp, "loader", "entries"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Repository: "https://updates.example.com", Hardware: "qemu-x86_64", Channel: "stable",
		Poll: config.Duration(time.Hour), Commit: "health", Wake: &config.Wake{Poll: config.Duration(24 * time.Hour)}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	repo := &countingRepo{refreshed: make(chan struct{})}
	return &Agent{
		Config: cfg, Repo: repo, Wake: w,
		Facts:     device.Facts{Release: release.ImageInfo{Version: "1.0.0", Hardware: "qemu-x86_64", Channel: "stable"}, Slot: "a"},
		Device:    &slot.Device{ESP: slot.DirESP(esp), Running: "a"},
		StatePath: filepath.Join(t.TempDir(), "state.json"),
	}, repo
}

// TestWakeNudgePolls: with an hour's poll, a nudge makes Run poll now,
// every time.
func TestWakeNudgePolls(t *testing.T) {
	w := &fakeWake{c: make(chan struct{}, 1)}
	w.up.Store(true)
	a, repo := wakeAgent(t, w)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-repo.refreshed // the poll at start
	for range 3 {
		w.c <- struct{}{}
		<-repo.refreshed // only the nudge can cause it: the next poll is a day away
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestWakeIntervals: while the channel is up the agent waits the wake
// poll, while it is down its own poll.
func TestWakeIntervals(t *testing.T) {
	w := &fakeWake{c: make(chan struct{})}
	a, _ := wakeAgent(t, w)
	if got := a.pollInterval(); got != time.Hour {
		t.Errorf("channel down: interval %s, want the config's poll 1h", got)
	}
	w.up.Store(true)
	if got := a.pollInterval(); got != 24*time.Hour {
		t.Errorf("channel up: interval %s, want wake.poll 24h", got)
	}
	a.Config.Wake = nil
	if got := a.pollInterval(); got != time.Hour {
		t.Errorf("no wake config: interval %s, want 1h", got)
	}
}

// TestWakeDownFallsBack: a long wait (the channel was up) ends once the
// channel is down and a normal poll is due.
func TestWakeDownFallsBack(t *testing.T) {
	w := &fakeWake{c: make(chan struct{})}
	w.up.Store(true)
	a, repo := wakeAgent(t, w)
	a.Config.Poll = config.Duration(time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-repo.refreshed // the poll at start; the next is a day away while up
	w.up.Store(false)
	<-repo.refreshed // channel down: back to the 1 s poll
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// pollCounter is the real TUF client, with each Refresh (a poll)
// reported with the number of targets it verified then.
type pollCounter struct {
	repository
	polled chan int
}

func (p *pollCounter) Refresh(ctx context.Context) error {
	err := p.repository.Refresh(ctx)
	targets, _ := p.repository.Targets()
	p.polled <- len(targets)
	return err
}

// lockedBuffer is a log sink for a goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWakeFallbackOverHTTPS: plumbd's loop with the real wake-up channel
// and TUF client against plumb serve over HTTPS on 127.0.0.1 (its fleet
// service and wake stream). While the channel is up the agent waits a day
// (wake.poll), so only the nudge makes it poll after a publish. Then the
// server restarts on the same address without the fleet service (no wake
// endpoint: the channel is refused and stays down) and the agent falls
// back to its poll (1 s): it keeps polling, and a publish made meanwhile
// reaches it through TUF. (e2e TestDeltaUpdateVM checks the wake-up and
// the return to polling on a real boot; this also checks that the polls
// find a publish.)
func TestWakeFallbackOverHTTPS(t *testing.T) {
	repo := fetchtest.NewRepo(t)
	repo.Publish()
	dir := t.TempDir()
	copyRepo(t, repo, dir)
	addr, pool, stop := serveFleet(t, dir, "", true)

	id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, server.JoinTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tr := fetch.NewTransport(fetch.TLSConfig(pool, nil))
	wc, err := report.DeviceClient(&http.Client{Transport: wake.Transport(tr)}, id, strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	sf := filepath.Join(t.TempDir(), WakeFile)
	ch, err := wake.New(wake.Options{URL: wake.URL("https://"+addr, id.ID), Client: wc, StatusFile: sf,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fc, err := fetch.New(fetch.Options{Repo: "https://" + addr, MetadataDir: t.TempDir(), TrustedRoot: repo.RootJSON(1),
		HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}

	a, _ := wakeAgent(t, &fakeWake{})
	a.Config.Poll = config.Duration(time.Second)
	pc := &pollCounter{repository: fc, polled: make(chan int)}
	a.Repo, a.Wake = pc, ch
	logs := &lockedBuffer{}
	a.Log = slog.New(slog.NewTextHandler(logs, nil))

	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	go ch.Run(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for {
			select {
			case <-pc.polled:
				continue
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				return
			}
		}
	})
	for !ch.Up() {
		select {
		case <-pc.polled: // the poll at start, and 1 s polls until the channel is up
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Up: the agent's wait now is a day once it polls again, which it
	// does at most once more (a wait of 1 s begun before the channel was
	// up), then only when nudged.
	repo.AddTarget("notes/1.1.txt", []byte("not a release"), nil)
	repo.Publish()
	copyRepo(t, repo, dir)
	// The agent logs the nudge before the poll it starts.
	for {
		n := <-pc.polled
		if strings.Contains(logs.String(), "woken: the repository's timestamp changed") {
			if n != 1 {
				t.Errorf("the nudged poll verified %d targets, want the one just published", n)
			}
			break
		}
	}

	// The wake endpoint goes away; the repository stays.
	stop()
	serveFleet(t, dir, addr, false)
	repo.AddTarget("notes/1.2.txt", []byte("not a release either"), nil)
	repo.Publish()
	copyRepo(t, repo, dir)
	for n := 0; n != 2; {
		n = <-pc.polled // only the 1 s poll can bring these: nothing nudges
	}
	woken := strings.Count(logs.String(), "woken: the repository's timestamp changed")
	if ch.Up() || woken != 1 {
		t.Errorf("after the restart without the fleet service: channel up %v, woken %d times; want down, once", ch.Up(), woken)
	}
	b, err := os.ReadFile(sf)
	if err != nil || !strings.Contains(string(b), `"state":"down"`) || !strings.Contains(string(b), "404") {
		t.Errorf("%s = %s (%v); want down, with the server's 404", WakeFile, b, err)
	}
}

// serveFleet runs plumb serve's server on dir at addr ("": any port on
// 127.0.0.1), with the fleet service and its wake stream (checking
// timestamp.json every 10 ms) when fleet; it returns the address, the CA
// pool and a stop function.
func serveFleet(t *testing.T, dir, addr string, fleet bool) (string, *x509.CertPool, func()) {
	t.Helper()
	o := server.Options{Dir: dir, CertDir: filepath.Join(dir, "tls")}
	if fleet {
		o.Fleet, o.Wake = &server.FleetOptions{Bootstrap: true}, server.WakeOptions{Check: 10 * time.Millisecond}
	}
	srv := servetest.Start(t, o, addr)
	return srv.Addr, srv.CAs, srv.Stop
}

// copyRepo copies repo's metadata and targets into dir's repository,
// timestamp.json last by rename, as plumb publish does.
func copyRepo(t *testing.T, repo *fetchtest.Repo, dir string) {
	t.Helper()
	err := filepath.WalkDir(repo.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "timestamp.json" {
			return err
		}
		rel, _ := filepath.Rel(repo.Dir, p)
		return copyTo(p, filepath.Join(dir, "repository", rel))
	})
	if err == nil {
		err = copyTo(filepath.Join(repo.Dir, "metadata", "timestamp.json"), filepath.Join(dir, "repository", "metadata", "timestamp.json"))
	}
	if err != nil {
		t.Fatal(err)
	}
}

func copyTo(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

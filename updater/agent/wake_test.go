package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/slot"
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

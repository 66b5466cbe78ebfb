package plumbd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/updater/agent"
)

// statusRoot is a device root for plumbd status --root: agent.json (with
// the wake-up channel when wake), a data dir, and a boot 100 s ago
// (proc/uptime).
func statusRoot(t *testing.T, wake bool) (root, dataDir string) {
	t.Helper()
	root = t.TempDir()
	cfg := config.Config{Repository: "https://updates.example.com", Hardware: "qemu-x86_64", Poll: config.Duration(time.Hour),
		Commit: "health", DataDir: "/data/plumb"}
	if wake {
		cfg.Wake = &config.Wake{}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{config.Path: b, "proc/uptime": []byte("100.00 150.00\n")} {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dataDir = filepath.Join(root, "data", "plumb")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return root, dataDir
}

// wakeOf runs plumbd status --root root and returns its wake member.
func wakeOf(t *testing.T, root string) *deviceapi.WakeStatus {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"status", "--root", root}, &out, &errb); code != 0 {
		t.Fatalf("plumbd status: %d %s", code, errb.String())
	}
	var st struct {
		Wake *deviceapi.WakeStatus `json:"wake"`
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("plumbd status: %v\n%s", err, out.String())
	}
	return st.Wake
}

// TestStatusWake: plumbd status shows the wake-up channel as the channel
// wrote it (connected since, last wake-up), marks a state from before the
// boot stale, says down when plumbd never held it, and has no member when
// the config does not turn the channel on.
func TestStatusWake(t *testing.T) {
	root, dataDir := statusRoot(t, true)
	if w := wakeOf(t, root); w == nil || w.State != deviceapi.WakeDown || w.Error == "" {
		t.Errorf("no %s yet: wake %+v, want down with why", agent.WakeFile, w)
	}

	since, last := time.Now().Add(-50*time.Second).UTC().Truncate(time.Second), time.Now().Add(-10*time.Second).UTC().Truncate(time.Second)
	write := func(w deviceapi.WakeStatus) {
		b, _ := json.Marshal(w)
		if err := os.WriteFile(filepath.Join(dataDir, agent.WakeFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(deviceapi.WakeStatus{State: deviceapi.WakeConnected, Since: since, LastWake: last})
	if w := wakeOf(t, root); w == nil || w.State != deviceapi.WakeConnected || !w.Since.Equal(since) || !w.LastWake.Equal(last) || w.Stale {
		t.Errorf("connected this boot: wake %+v, want connected since %s, last wake-up %s, not stale", w, since, last)
	}

	// Written before this boot (100 s ago): plumbd has not held it since.
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	write(deviceapi.WakeStatus{State: deviceapi.WakeDown, Since: old, LastWake: old, Error: "wake channel: 503 Service Unavailable"})
	if w := wakeOf(t, root); w == nil || w.State != deviceapi.WakeDown || !w.Stale || w.Error != "wake channel: 503 Service Unavailable" {
		t.Errorf("from the boot before: wake %+v, want down, its error, stale", w)
	}

	if err := os.WriteFile(filepath.Join(dataDir, agent.WakeFile), []byte(`{"state":"sideways"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := wakeOf(t, root); w == nil || w.State != deviceapi.WakeDown || w.Error == "" {
		t.Errorf("unknown state in the file: wake %+v, want down with why", w)
	}

	root, _ = statusRoot(t, false)
	if w := wakeOf(t, root); w != nil {
		t.Errorf("config without wake: wake %+v, want none", w)
	}
}

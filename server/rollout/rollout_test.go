package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/server/store"
)

const hw = "qemu-x86_64"

// The outcomes in these tests come from a real fleet store (server/store
// on a SQLite file in the test's directory), the one plumb serve passes to
// its halt controller: each device joins an organization and its reports'
// release outcomes are recorded as plumb serve records them.

func fakeBuild(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	d := func(name, content string) builder.Digest {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256([]byte(content))
		return builder.Digest{Size: int64(len(content)), SHA256: hex.EncodeToString(s[:])}
	}
	rootfs := d(builder.RootfsFile, "image "+version)
	m := builder.Manifest{Name: "demo", Version: version, Hardware: hw, Channel: "stable",
		Artifacts: []builder.Artifact{{Name: builder.RootfsFile, Size: rootfs.Size, SHA256: rootfs.SHA256}},
		Kernel:    d(builder.KernelFile, "k"), Initrd: d(builder.InitrdFile, "i")}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, builder.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type rig struct {
	dir string
	now time.Time
	w   *Watcher
	st  *store.Store
	org string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{dir: filepath.Join(t.TempDir(), "repo"), now: time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)}
	opts := tufrepo.Options{Now: func() time.Time { return r.now }}
	if err := tufrepo.Init(t.Context(), r.dir, opts); err != nil {
		t.Fatal(err)
	}
	repo, err := tufrepo.Open(r.dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if _, err := repo.Publish(t.Context(), fakeBuild(t, v), tufrepo.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if r.st, err = store.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	org, err := r.st.CreateOrg(t.Context(), "default", 1000)
	if err != nil {
		t.Fatal(err)
	}
	r.org = org.ID
	r.w = &Watcher{Dir: r.dir, RepoOptions: opts, Outcomes: r.st,
		Policy: Policy{Threshold: 0.25, MinSample: 8}, Audit: &FileAudit{Path: filepath.Join(r.dir, "audit.jsonl")}}
	return r
}

// report adds device id to the fleet store and records a report of it
// with the given release outcomes (hardware hw unless the outcome says).
func (r *rig) report(t *testing.T, id string, outcomes ...store.Outcome) {
	t.Helper()
	ctx := t.Context()
	if err := r.st.AddDevice(ctx, &store.Device{ID: id, OrgID: r.org, PublicKey: []byte("key of " + id), JoinedBy: "join token test"}); err != nil {
		t.Fatal(err)
	}
	for i := range outcomes {
		if outcomes[i].Hardware == "" {
			outcomes[i].Hardware = hw
		}
	}
	if err := r.st.RecordReport(ctx, id, &store.Report{At: r.now, Body: []byte(`{}`), Hardware: hw, Outcomes: outcomes}); err != nil {
		t.Fatal(err)
	}
}

func committed(version string) store.Outcome {
	return store.Outcome{Version: version, Outcome: store.OutcomeCommitted}
}

func failed(version string) store.Outcome {
	return store.Outcome{Version: version, Outcome: store.OutcomeFailed, Reason: "health check failed"}
}

func (r *rig) facts(t *testing.T, version string) release.Facts {
	t.Helper()
	repo, err := tufrepo.Open(r.dir, r.w.RepoOptions)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := repo.Releases()
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range rels {
		if rel.Path == release.TargetPath(hw, version) {
			return rel.Facts
		}
	}
	t.Fatalf("no release %s", version)
	return release.Facts{}
}

// TestWatcherHalts: below the minimum sample nothing happens whatever the
// rate; at or under the threshold nothing happens; above it the release is
// halted through TUF (its facts say why and who, the legacy rollout is 0),
// once, with an audit record; other releases are untouched.
func TestWatcherHalts(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	// 7 devices, all failed: under the minimum sample of 8 (devices
	// of other hardware, and outcomes of 1.0.0, do not count).
	for i := range 7 {
		r.report(t, "f"+string(rune('a'+i)), failed("2.0.0"))
	}
	r.report(t, "rpi", store.Outcome{Hardware: "rpi4", Version: "2.0.0", Outcome: store.OutcomeFailed})
	r.report(t, "old", failed("1.0.0"))
	if h, err := r.w.Check(ctx); err != nil || len(h) != 0 {
		t.Fatalf("Check under the minimum sample = %v, %v; want no halt", h, err)
	}
	// 28 devices, 7 failed: exactly 25%, not above (one is still on
	// trial: it tried it).
	for i := range 20 {
		r.report(t, "ok"+string(rune('a'+i)), committed("2.0.0"))
	}
	r.report(t, "trial", store.Outcome{Version: "2.0.0", Outcome: store.OutcomeTrying})
	if h, err := r.w.Check(ctx); err != nil || len(h) != 0 {
		t.Fatalf("Check at the threshold = %v, %v; want no halt", h, err)
	}
	r.report(t, "fz", failed("2.0.0")) // 8 of 29: 27.6%
	h, err := r.w.Check(ctx)
	if err != nil || len(h) != 1 || h[0].Version != "2.0.0" || h[0].Tried != 29 || h[0].Failed != 8 {
		t.Fatalf("Check above the threshold = %+v, %v; want 2.0.0 halted (8 of 29)", h, err)
	}
	f := r.facts(t, "2.0.0")
	want := "failure rate 28% (8 of 29 devices that tried it) passed the threshold 25% (minimum sample 8)"
	if f.Halted == nil || f.Halted.Reason != want || f.Halted.By != "plumb rollout watch" || !f.Halted.At.Equal(r.now) || f.Rollout != 0 {
		t.Errorf("halted facts %+v rollout %d; want reason %q by plumb rollout watch at %s, rollout 0", f.Halted, f.Rollout, want, r.now)
	}
	if ok, why := f.Admits("any", "", r.now); ok || !strings.Contains(why, want) {
		t.Errorf("Admits after the halt = %v, %q", ok, why)
	}
	if f1 := r.facts(t, "1.0.0"); f1.Halted != nil || len(f1.Waves) != 0 {
		t.Errorf("1.0.0 changed: %+v", f1.Control)
	}
	// Halted once: the next check leaves it (and the repository) alone.
	before, _ := os.ReadFile(filepath.Join(r.dir, "repository", "metadata", "timestamp.json"))
	if h, err := r.w.Check(ctx); err != nil || len(h) != 0 {
		t.Fatalf("second Check = %v, %v; want nothing new", h, err)
	}
	after, _ := os.ReadFile(filepath.Join(r.dir, "repository", "metadata", "timestamp.json"))
	if string(before) != string(after) {
		t.Error("a second check re-signed the repository")
	}
	audit, err := os.ReadFile(filepath.Join(r.dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(audit)), "\n")
	var e Entry
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Action != "rollout.halt" || e.Release != hw+"/2.0.0" || e.Actor != "plumb rollout watch" || e.Detail != want {
		t.Errorf("audit log %q; want one halt record of %s/2.0.0 by plumb rollout watch", audit, hw)
	}
}

// TestWatcherAdvancesLegacyRollout: when a wave begins, the controller
// re-signs the legacy rollout percentage for agents that read only it.
func TestWatcherAdvancesLegacyRollout(t *testing.T) {
	r := newRig(t)
	repo, err := tufrepo.Open(r.dir, r.w.RepoOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Rollout(t.Context(), hw, "2.0.0", func(c *release.Control, now time.Time) error {
		c.SetWaves("", []release.Wave{{Percent: 10, At: now}, {Percent: 60, At: now.Add(time.Hour)}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := r.facts(t, "2.0.0").Rollout; got != 10 {
		t.Fatalf("rollout %d, want 10", got)
	}
	if _, err := r.w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := r.facts(t, "2.0.0").Rollout; got != 10 {
		t.Errorf("before the second wave: rollout %d, want 10", got)
	}
	r.now = r.now.Add(time.Hour)
	if _, err := r.w.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := r.facts(t, "2.0.0").Rollout; got != 60 {
		t.Errorf("after the second wave began: rollout %d, want 60", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{{0, 1}, {1, 1}, {-0.1, 1}, {0.2, 0}} {
		if err := p.Validate(); err == nil {
			t.Errorf("Policy %+v accepted", p)
		}
	}
	w := &Watcher{Policy: Policy{0.2, 1}}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Run(ctx, 0); err == nil {
		t.Error("Run with interval 0 accepted")
	}
}

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
)

const hw = "qemu-x86_64"

// The outcomes in these tests come from ReportOutcomes over status report
// files as plumb serve stores them (server/reports.go). It stands in for
// the fleet service's store (server/store on branch i12-fleet), whose
// ReleaseOutcomes has the same signature and answers from its history.

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

// writeReport stores a device's last report the way plumb serve does.
func writeReport(t *testing.T, dir, id string, status map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"device": map[string]string{"id": id}, "status": status})
	rep, _ := json.Marshal(map[string]any{"id": id, "received_at": time.Now().UTC(), "remote": "127.0.0.1:1", "report": json.RawMessage(body)})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".json"), rep, 0o644); err != nil {
		t.Fatal(err)
	}
}

func running(version string) map[string]any {
	return map[string]any{"release": map[string]string{"hardware": hw, "version": version},
		"update": map[string]any{"phase": "committed", "version": version}}
}

func rolledBack(from, to string) map[string]any {
	return map[string]any{"release": map[string]string{"hardware": hw, "version": to},
		"update": map[string]any{"phase": "idle", "bad": map[string]string{from: "health check failed"}}}
}

type rig struct {
	dir, reports string
	now          time.Time
	w            *Watcher
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{dir: filepath.Join(t.TempDir(), "repo"), now: time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)}
	r.reports = filepath.Join(r.dir, "reports")
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
	r.w = &Watcher{Dir: r.dir, RepoOptions: opts, Outcomes: ReportOutcomes{Dir: r.reports},
		Policy: Policy{Threshold: 0.25, MinSample: 8}, Audit: &FileAudit{Path: filepath.Join(r.dir, "audit.jsonl")}}
	return r
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

func TestReportOutcomes(t *testing.T) {
	dir := t.TempDir()
	writeReport(t, dir, "a", running("2.0.0"))             // tried, ok
	writeReport(t, dir, "b", rolledBack("2.0.0", "1.0.0")) // tried, failed
	writeReport(t, dir, "c", map[string]any{"release": map[string]string{"hardware": hw, "version": "1.0.0"},
		"update": map[string]any{"phase": "rebooting", "version": "2.0.0"}}) // tried (installed, rebooting into it)
	writeReport(t, dir, "c2", map[string]any{"release": map[string]string{"hardware": hw, "version": "1.0.0"},
		"update": map[string]any{"phase": "downloading", "version": "2.0.0"}}) // not tried yet
	writeReport(t, dir, "d", running("1.0.0"))                                                                     // not tried
	writeReport(t, dir, "e", map[string]any{"release": map[string]string{"hardware": "rpi4", "version": "2.0.0"}}) // other hardware
	os.WriteFile(filepath.Join(dir, "f.json"), []byte("not json"), 0o644)
	os.WriteFile(filepath.Join(dir, "Bad Name.json"), []byte("{}"), 0o644)
	outside := filepath.Join(t.TempDir(), "outside.json")
	writeReport(t, filepath.Dir(outside), "outside", rolledBack("2.0.0", "1.0.0"))
	os.Symlink(filepath.Join(filepath.Dir(outside), "outside.json"), filepath.Join(dir, "g.json")) // a link out: not followed

	tried, failed, err := ReportOutcomes{Dir: dir}.ReleaseOutcomes(t.Context(), hw, "2.0.0")
	if err != nil || tried != 3 || failed != 1 {
		t.Errorf("ReleaseOutcomes = %d tried, %d failed, %v; want 3, 1", tried, failed, err)
	}
	if _, _, err := (ReportOutcomes{Dir: dir, MaxReports: 4}).ReleaseOutcomes(t.Context(), hw, "2.0.0"); err == nil || !strings.Contains(err.Error(), "expected at most 4") {
		t.Errorf("over the cap: %v", err)
	}
	if tried, failed, err := (ReportOutcomes{Dir: filepath.Join(dir, "missing")}).ReleaseOutcomes(t.Context(), hw, "2.0.0"); tried != 0 || failed != 0 || err != nil {
		t.Errorf("no reports yet: %d %d %v", tried, failed, err)
	}
}

// TestWatcherHalts: below the minimum sample nothing happens whatever the
// rate; at or under the threshold nothing happens; above it the release is
// halted through TUF (its facts say why and who, the legacy rollout is 0),
// once, with an audit record; other releases are untouched.
func TestWatcherHalts(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	// 7 devices, all failed: under the minimum sample of 8.
	for i := range 7 {
		writeReport(t, r.reports, "f"+string(rune('a'+i)), rolledBack("2.0.0", "1.0.0"))
	}
	if h, err := r.w.Check(ctx); err != nil || len(h) != 0 {
		t.Fatalf("Check under the minimum sample = %v, %v; want no halt", h, err)
	}
	// 28 devices, 7 failed: exactly 25%, not above.
	for i := range 21 {
		writeReport(t, r.reports, "ok"+string(rune('a'+i)), running("2.0.0"))
	}
	if h, err := r.w.Check(ctx); err != nil || len(h) != 0 {
		t.Fatalf("Check at the threshold = %v, %v; want no halt", h, err)
	}
	writeReport(t, r.reports, "fz", rolledBack("2.0.0", "1.0.0")) // 8 of 29: 27.6%
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

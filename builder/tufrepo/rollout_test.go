package tufrepo

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/release"
)

func pause(c *release.Control, _ time.Time) error { c.Paused = true; return nil }

func halt(reason string) RolloutEdit {
	return func(c *release.Control, now time.Time) error {
		c.Halted = &release.Halt{Reason: reason, At: now, By: "test"}
		return nil
	}
}

func waves(group string, ws ...release.Wave) RolloutEdit {
	return func(c *release.Control, _ time.Time) error { c.SetWaves(group, ws); return nil }
}

// TestRolloutSignsOnlyTargets: a rollout change re-signs targets, snapshot
// and timestamp (a client sees the new facts), never root, and reaches the
// release's delta and installer targets while keeping keys it does not own.
func TestRolloutSignsOnlyTargets(t *testing.T) {
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	opts := Options{Now: func() time.Time { return now }}
	r := newRepo(t, opts)
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	img1, img2 := sqfsImage(t, "1.0.0"), sqfsImage(t, "2.0.0")
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img1), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	fifty := 50
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", img2), PublishOptions{Rollout: &fifty, Deltas: 1}); err != nil {
		t.Fatal(err)
	}
	// A key a newer publisher added by hand must survive.
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	rootJSON := readMeta(t, r, "root.json")

	f, err := r.Rollout(t.Context(), hw, "2.0.0", waves("",
		release.Wave{Percent: 10, At: now}, release.Wave{Percent: 60, At: now.Add(24 * time.Hour)}))
	if err != nil {
		t.Fatalf("Rollout: %v", err)
	}
	if f.Rollout != 10 || len(f.Waves) != 2 {
		t.Fatalf("Rollout facts: rollout %d, waves %+v; want 10 and the two waves", f.Rollout, f.Waves)
	}
	st2, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st2.targets.Signed.Version, st.targets.Signed.Version+1; got != want {
		t.Errorf("targets version %d, want %d", got, want)
	}
	if st2.root.Signed.Version != 1 || string(readMeta(t, r, "root.json")) != string(rootJSON) {
		t.Error("root changed: rollout must not re-sign root")
	}
	if _, err := os.Stat(r.metaPath("2.root.json")); err == nil {
		t.Error("2.root.json written")
	}
	for _, p := range []string{release.TargetPath(hw, "2.0.0"), release.DeltaPath(hw, "2.0.0", "1.0.0")} {
		tf := st2.targets.Signed.Targets[p]
		if tf == nil {
			t.Fatalf("%s missing", p)
		}
		got, err := release.Parse(*tf.Custom)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rollout != 10 || len(got.Waves) != 2 {
			t.Errorf("%s: rollout %d waves %d, want 10 and 2", p, got.Rollout, len(got.Waves))
		}
	}
	if got := st2.targets.Signed.Targets[release.TargetPath(hw, "1.0.0")]; strings.Contains(string(*got.Custom), "waves") {
		t.Errorf("1.0.0 touched: %s", *got.Custom)
	}

	// A client of the served repository sees the change.
	u := client(t, srv, root1, "", now)
	tf, err := u.GetTargetInfo(release.TargetPath(hw, "2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := release.Parse(*tf.Custom)
	if err != nil || cf.Rollout != 10 || len(cf.Waves) != 2 {
		t.Fatalf("client facts %+v, %v; want rollout 10 and 2 waves", cf, err)
	}

	// Pause: legacy rollout 0; an identical pause signs nothing.
	if f, err = r.Rollout(t.Context(), hw, "2.0.0", pause); err != nil || f.Rollout != 0 || !f.Paused {
		t.Fatalf("pause = %+v, %v", f, err)
	}
	before := treeHash(t, r.Dir())
	if _, err := r.Rollout(t.Context(), hw, "2.0.0", pause); err != nil {
		t.Fatal(err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("a second identical pause changed the repository")
	}

	// Publishing the release again keeps the pause (and the waves).
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", img2), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rels, err := r.Releases()
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range rels {
		if rel.Facts.Version == "2.0.0" && (!rel.Facts.Paused || rel.Facts.Rollout != 0 || len(rel.Facts.Waves) != 2) {
			t.Errorf("after publish again, %s: paused %v rollout %d waves %d; want kept", rel.Path, rel.Facts.Paused, rel.Facts.Rollout, len(rel.Facts.Waves))
		}
	}

	// Unknown keys in a target's facts are kept.
	custom, err := withControl(json.RawMessage(`{"kind":"full","future_key":{"x":1},"waves":[1]}`), release.Control{Paused: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(custom); !strings.Contains(s, `"future_key":{"x":1}`) || strings.Contains(s, "waves") || !strings.Contains(s, `"paused":true`) {
		t.Errorf("withControl = %s; want future_key kept, waves dropped, paused set", s)
	}
}

// TestRolloutFailureLeavesRepository: a rollout change that fails leaves
// the repository byte-identical.
func TestRolloutFailureLeavesRepository(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		version  string
		edit     RolloutEdit
		sabotage func(t *testing.T, r *Repo) context.Context
		invalid  bool
		want     string
	}{
		{"unknown release", "9.9.9", pause, nil, true, "expected a published release"},
		{"falling waves", "2.0.0", waves("", release.Wave{Percent: 50, At: time.Unix(1e9, 0)}, release.Wave{Percent: 10, At: time.Unix(2e9, 0)}), nil, true, "expected at least 50"},
		{"bad group", "2.0.0", waves("Canary!", release.Wave{Percent: 50, At: time.Unix(1e9, 0)}), nil, true, "group"},
		{"empty halt reason", "2.0.0", halt(""), nil, true, "halted.reason"},
		{"edit refuses", "2.0.0", func(*release.Control, time.Time) error { return invalid("no") }, nil, true, "no"},
		{"targets key corrupt", "2.0.0", pause, func(t *testing.T, r *Repo) context.Context {
			os.WriteFile(r.keyPath(metadata.TARGETS), []byte("garbage"), 0o600)
			return t.Context()
		}, false, "targets"},
		{"timestamp key missing", "2.0.0", pause, func(t *testing.T, r *Repo) context.Context {
			os.Remove(r.keyPath(metadata.TIMESTAMP))
			return t.Context()
		}, false, "timestamp"},
		{"snapshot write fails", "2.0.0", pause, func(t *testing.T, r *Repo) context.Context {
			os.Mkdir(r.metaPath("4.snapshot.json"), 0o755) // init 1, two publishes, then this change
			return t.Context()
		}, false, "4.snapshot.json"},
		{"targets write fails", "2.0.0", pause, func(t *testing.T, r *Repo) context.Context {
			os.Mkdir(r.metaPath("4.targets.json"), 0o755)
			return t.Context()
		}, false, "4.targets.json"},
		{"cancelled", "2.0.0", pause, func(*testing.T, *Repo) context.Context { return cancelled }, false, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, Options{})
			for _, v := range []string{"1.0.0", "2.0.0"} {
				if _, err := r.Publish(t.Context(), fakeBuild(t, v, randomBytes(t, 4096)), PublishOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			ctx := t.Context()
			if tt.sabotage != nil {
				ctx = tt.sabotage(t, r)
			}
			before := treeHash(t, r.Dir())
			_, err := r.Rollout(ctx, hw, tt.version, tt.edit)
			if err == nil {
				t.Fatal("Rollout succeeded, want an error")
			}
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want one line containing %q", err, tt.want)
			}
			if got := errors.Is(err, ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(%v, ErrInvalid) = %v, want %v", err, got, tt.invalid)
			}
			if treeHash(t, r.Dir()) != before {
				t.Error("the failed rollout change changed the repository")
			}
		})
	}
}

func TestFindRelease(t *testing.T) {
	r := newRepo(t, Options{})
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", randomBytes(t, 4096)), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ spec, hw, want, err string }{
		{"2.0.0", "", hw + "/2.0.0", ""},
		{hw + "/2.0.0", "", hw + "/2.0.0", ""},
		{"2.0.0", "rpi4", "rpi4/2.0.0", ""},
		{"3.0.0", "", "", "expected a published version"},
		{hw + "/2.0.0", "rpi4", "", "but --hardware says rpi4"},
		{"/2.0.0", "", "", "expected HARDWARE/VERSION"},
		{"", "", "", "got nothing"},
	} {
		h, v, err := r.FindRelease(tc.spec, tc.hw)
		got := ""
		if err == nil {
			got = h + "/" + v
		}
		if got != tc.want || (tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err))) {
			t.Errorf("FindRelease(%q, %q) = %q, %v; want %q, error containing %q", tc.spec, tc.hw, got, err, tc.want, tc.err)
		}
	}
}

package tufrepo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/workload"
)

var testManifest = &workload.Manifest{Containers: []workload.Container{{
	Name: "web", Image: "example.com/web@sha256:" + strings.Repeat("a", 64), Target: "apps/demo/web.tar",
}}}

// TestPublishWorkloads: the manifest and its archive are signed by the
// delegated role apps (a client finds them through the delegation), and a
// refresh re-signs apps before it would expire.
func TestPublishWorkloads(t *testing.T) {
	now := time.Now()
	clock := now
	r := newRepo(t, Options{Now: func() time.Time { return clock }})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	archive := filepath.Join(t.TempDir(), "web.tar")
	if err := os.WriteFile(archive, []byte("not really a tar, the repository does not care"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := r.PublishWorkloads(t.Context(), "demo", testManifest, map[string]string{"apps/demo/web.tar": archive}, WorkloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !w.Changed || w.Version != 2 || w.Target != "apps/demo/workloads.json" {
		t.Errorf("PublishWorkloads = %+v", w)
	}
	u := client(t, srv, root1, "", clock)
	if err := u.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"apps/demo/workloads.json", "apps/demo/web.tar"} {
		if _, err := u.GetTargetInfo(p); err != nil {
			t.Errorf("GetTargetInfo(%s) = %v", p, err)
		}
		if _, ok := u.GetTopLevelTargets()[p]; ok {
			t.Errorf("%s is in the top-level targets, want it only in apps", p)
		}
	}

	// Invalid input leaves the repository as it was.
	before := treeHash(t, r.Dir())
	for _, tt := range []struct {
		group string
		m     *workload.Manifest
		a     map[string]string
		o     WorkloadOptions
		want  string
	}{
		{"Demo", testManifest, nil, WorkloadOptions{}, `group: expected`},
		{"other", testManifest, nil, WorkloadOptions{}, `workloads: containers[0].target: expected a target of group "other"`},
		{"demo", testManifest, map[string]string{"apps/demo/x.tar": archive}, WorkloadOptions{}, "no container names target apps/demo/x.tar"},
		{"demo", testManifest, nil, WorkloadOptions{Role: "snapshot"}, `role: expected apps (or targets, in tests), got "snapshot"`},
		{"demo", &workload.Manifest{Containers: []workload.Container{{Name: "x", Image: testManifest.Containers[0].Image, Target: "apps/demo/new.tar"}}}, nil, WorkloadOptions{}, "target apps/demo/new.tar: not published yet"},
	} {
		_, err := r.PublishWorkloads(t.Context(), tt.group, tt.m, tt.a, tt.o)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("PublishWorkloads(%s, %+v) = %v, want ErrInvalid %q", tt.group, tt.a, err, tt.want)
		}
	}
	if after := treeHash(t, r.Dir()); after != before {
		t.Errorf("a refused PublishWorkloads changed the repository")
	}

	// 89 days later apps (90 days) would expire before a new snapshot:
	// Refresh re-signs it with the apps key.
	clock = now.Add(89 * 24 * time.Hour)
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	if st.apps.Signed.Version != 3 || !st.apps.Signed.Expires.After(clock.Add(30*24*time.Hour)) {
		t.Errorf("apps after Refresh: version %d expires %s, want version 3 valid for another 90 days", st.apps.Signed.Version, st.apps.Signed.Expires)
	}
	u = client(t, srv, root1, "", clock)
	if err := u.Refresh(); err != nil {
		t.Fatalf("client Refresh after the repository's Refresh: %v", err)
	}
	if _, err := u.GetTargetInfo("apps/demo/workloads.json"); err != nil {
		t.Errorf("after Refresh: GetTargetInfo = %v", err)
	}
	// Without the apps key, that refresh fails and says why.
	clock = now.Add(178 * 24 * time.Hour)
	os.Rename(filepath.Join(r.Dir(), "keys", "apps.key"), filepath.Join(r.Dir(), "apps.key.offline"))
	if err := r.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "apps metadata expires") {
		t.Errorf("Refresh without the apps key = %v, want an error naming the apps role", err)
	}
}

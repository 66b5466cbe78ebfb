package plumb

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

func TestPublishWorkloads(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	if code, _, stderr := runRepoVerbs(t, "repo", "init", repo); code != 0 {
		t.Fatalf("repo init: %s", stderr)
	}
	os.MkdirAll(filepath.Join(tmp, "app", "images"), 0o755)
	dg, err := ocitest.Write(filepath.Join(tmp, "app", "images", "web.tar"), ocitest.Image{Files: []ocitest.File{{Name: "hello", Data: []byte("hi")}}})
	if err != nil {
		t.Fatal(err)
	}
	yaml := filepath.Join(tmp, "app", "workloads.yaml")
	write := func(img string) {
		os.WriteFile(yaml, []byte("containers:\n  - name: web\n    image: example.com/web@"+img+"\n    archive: images/web.tar\n"), 0o644)
	}
	write(dg)
	code, stdout, stderr := runRepoVerbs(t, "publish", repo, "--workloads", yaml, "--group", "demo", "--json")
	if code != 0 {
		t.Fatalf("publish --workloads = %d, %s", code, stderr)
	}
	var w tufrepo.Workloads
	if err := json.Unmarshal([]byte(stdout), &w); err != nil || w.Target != "apps/demo/workloads.json" || strings.Join(w.Targets, " ") != "apps/demo/web.tar apps/demo/workloads.json" {
		t.Errorf("publish --workloads --json = %s (%v)", stdout, err)
	}
	for _, glob := range []string{"*.workloads.json", "*.web.tar"} {
		if m, _ := filepath.Glob(filepath.Join(repo, "repository", "targets", "apps", "demo", glob)); len(m) != 1 {
			t.Errorf("targets/apps/demo/%s: %v, want one file", glob, m)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(repo, "repository", "metadata", "2.apps.json")); len(m) != 1 {
		t.Errorf("no 2.apps.json: the apps role did not sign")
	}

	// The same content again: nothing new signed.
	if code, stdout, stderr := runRepoVerbs(t, "publish", repo, "--workloads", yaml, "--group", "demo"); code != 0 || !strings.Contains(stdout, "already published, unchanged: apps/demo/workloads.json") || !strings.Contains(stdout, "version 2") {
		t.Errorf("publishing the same workloads again = %d, %q, %q; want apps version 2 still", code, stdout, stderr)
	}

	// Bad input: one line, exit 2, nothing published.
	other := "sha256:" + strings.Repeat("b", 64)
	for _, tt := range []struct {
		args []string
		img  string
		want string
	}{
		{[]string{"--group", "demo"}, other, "images/web.tar: holds images [" + dg + "], not " + other + " that container web pins"},
		{[]string{"--group", "Demo"}, dg, `--group: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got "Demo"`},
		{nil, dg, "--group: expected a group name with --workloads, got nothing"},
		{[]string{"--group", "demo", "--release", tmp}, dg, "expected one of --release BUILD_DIR or --workloads FILE"},
	} {
		write(tt.img)
		args := append([]string{"publish", repo, "--workloads", yaml}, tt.args...)
		code, _, stderr := runRepoVerbs(t, args...)
		if code != cli.ExitBadInput || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("plumb %q = %d, %q; want exit 2 and %q", args, code, stderr, tt.want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(repo, "repository", "metadata", "3.apps.json")); len(m) != 0 {
		t.Errorf("a refused publish signed a new apps.json")
	}

	code, stdout, _ = runRepoVerbs(t, "repo", "keys", repo)
	if code != 0 || !strings.Contains(stdout, "keys/apps.key") || !strings.Contains(stdout, "apps/*/*") {
		t.Errorf("repo keys = %d, %q; want the apps key and its paths", code, stdout)
	}
}

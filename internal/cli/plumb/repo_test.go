package plumb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/internal/cli"
)

// runRepoVerbs runs plumb with the repo and publish verbs the way RunPlumb
// does (same flag-error and exit-code handling).
func runRepoVerbs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Stdout: &out, Stderr: &errb, Log: cli.NewLogger(&errb, false)}
	root := &cobra.Command{Use: "plumb", SilenceUsage: true, SilenceErrors: true}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.BadInput(err) })
	root.AddCommand(newRepoCmd(e), newPublishCmd(e))
	err := root.ExecuteContext(t.Context())
	if err != nil && cli.IsCobraUsageError(err) {
		err = cli.BadInput(err)
	}
	code = cli.ExitCode(err, &errb, "plumb")
	return code, out.String(), errb.String()
}

func writeBuild(t *testing.T, version, image string) string {
	t.Helper()
	dir := t.TempDir()
	d := func(name, content string) builder.Digest {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256([]byte(content))
		return builder.Digest{Size: int64(len(content)), SHA256: hex.EncodeToString(s[:])}
	}
	rootfs := d(builder.RootfsFile, image)
	m := builder.Manifest{Name: "demo", Version: version, Hardware: "qemu-x86_64", Channel: "stable",
		Artifacts: []builder.Artifact{{Name: builder.RootfsFile, Size: rootfs.Size, SHA256: rootfs.SHA256}},
		Kernel:    d(builder.KernelFile, "k"), Initrd: d(builder.InitrdFile, "i")}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, builder.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRepoVerbs(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	b1, b2 := writeBuild(t, "1.0.0", "image one"), writeBuild(t, "1.1.0", "image two")
	steps := []struct {
		args    []string
		code    int
		wantOut string // substring of stdout (code 0) or stderr
	}{
		{[]string{"repo", "init", repo}, 0, "keys/root.key offline"},
		{[]string{"repo", "init", repo}, cli.ExitBadInput, "expected an empty or missing directory"},
		{[]string{"publish", repo, "--release", b1}, 0, "published demo 1.0.0 for qemu-x86_64 on stable (rollout 100%)"},
		{[]string{"publish", repo, "--release", b2, "--channel", "beta", "--rollout", "5"}, 0, "on beta (rollout 5%)"},
		{[]string{"publish", repo, "--release", writeBuild(t, "1.0.0", "other bytes")}, cli.ExitBadInput, "already published with other content"},
		{[]string{"publish", repo, "--release", "/nonexistent"}, cli.ExitBadInput, "/nonexistent: expected the output directory of plumb build"},
		{[]string{"publish", repo, "--release", t.TempDir()}, cli.ExitBadInput, "manifest.json: not found"},
		{[]string{"publish", repo}, cli.ExitBadInput, "expected one of --release BUILD_DIR or --workloads FILE"},
		{[]string{"publish", repo, "--release", b1, "--rollout", "101"}, cli.ExitBadInput, "--rollout: expected a percentage 0..100, got 101"},
		{[]string{"publish", filepath.Join(repo, "nope"), "--release", b1}, cli.ExitBadInput, "expected a repository made by plumb repo init"},
		{[]string{"repo", "ls", repo}, 0, "qemu-x86_64  1.1.0    full  beta     5%"},
		{[]string{"repo", "refresh", repo}, 0, ""},
		{[]string{"repo", "rotate", repo, "apps"}, cli.ExitBadInput, `role: expected root, targets, snapshot or timestamp, got "apps"`},
		{[]string{"repo", "rotate", repo, "timestamp"}, 0, "rotated the timestamp key"},
	}
	for _, s := range steps {
		code, stdout, stderr := runRepoVerbs(t, s.args...)
		got := stdout
		if s.code != 0 {
			got = stderr
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("plumb %q: stderr %q, want one line", s.args, stderr)
			}
		}
		if code != s.code || !strings.Contains(got, s.wantOut) {
			t.Errorf("plumb %q = exit %d, stdout %q, stderr %q; want exit %d and %q", s.args, code, stdout, stderr, s.code, s.wantOut)
		}
	}

	code, stdout, stderr := runRepoVerbs(t, "repo", "ls", "--json", repo)
	var rels []tufrepo.Release
	if code != 0 || json.Unmarshal([]byte(stdout), &rels) != nil {
		t.Fatalf("repo ls --json = exit %d, %q, %q", code, stdout, stderr)
	}
	var got []string
	for _, r := range rels {
		got = append(got, r.Facts.Version+"/"+r.Facts.Channel)
	}
	if want := "1.0.0/stable 1.1.0/beta"; strings.Join(got, " ") != want {
		t.Errorf("repo ls --json versions = %q, want %q", got, want)
	}
}

func TestRepoThresholds(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	steps := []struct {
		args    []string
		code    int
		wantOut string // substring of stdout (code 0) or stderr
	}{
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "root"}, cli.ExitBadInput, `--threshold: expected ROLE=N (e.g. root=2), got "root"`},
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "root=two"}, cli.ExitBadInput, `--threshold: expected ROLE=N (e.g. root=2), got "root=two"`},
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "bogus=2"}, cli.ExitBadInput, `threshold: expected a role (root, targets, snapshot, timestamp, apps), got "bogus"`},
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "root=11"}, cli.ExitBadInput, "threshold[root]: expected 1..10 keys, got 11"},
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "root=0"}, cli.ExitBadInput, "threshold[root]: expected 1..10 keys, got 0"},
		{[]string{"repo", "init", filepath.Join(tmp, "a"), "--threshold", "root=2", "--threshold", "root=3"}, cli.ExitBadInput, `--threshold: role "root" given twice`},
		{[]string{"repo", "init", repo, "--threshold", "root=2", "--threshold", "targets=2"}, 0,
			"move " + filepath.Join(repo, "keys", "root.key") + ", " + filepath.Join(repo, "keys", "root-2.key") + " offline"},
		{[]string{"publish", repo, "--release", writeBuild(t, "1.0.0", "image one")}, 0, "published demo 1.0.0"},
		{[]string{"repo", "keys", repo}, 0, "targets    2/2"},
		{[]string{"repo", "rotate", repo, "root"}, 0, "rotated the root key"},
	}
	for _, s := range steps {
		code, stdout, stderr := runRepoVerbs(t, s.args...)
		got := stdout
		if s.code != 0 {
			got = stderr
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("plumb %q: stderr %q, want one line", s.args, stderr)
			}
		}
		if code != s.code || !strings.Contains(got, s.wantOut) {
			t.Errorf("plumb %q = exit %d, stdout %q, stderr %q; want exit %d and %q", s.args, code, stdout, stderr, s.code, s.wantOut)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "a")); !os.IsNotExist(err) {
		t.Errorf("a refused init left %s: %v", filepath.Join(tmp, "a"), err)
	}

	code, stdout, stderr := runRepoVerbs(t, "repo", "keys", "--json", repo)
	var roles []tufrepo.RoleKeys
	if code != 0 || json.Unmarshal([]byte(stdout), &roles) != nil {
		t.Fatalf("repo keys --json = exit %d, %q, %q", code, stdout, stderr)
	}
	var got []string
	for _, rk := range roles {
		got = append(got, fmt.Sprintf("%s %d/%d", rk.Role, rk.Threshold, len(rk.Keys)))
	}
	if want := "root 2/2 targets 2/2 snapshot 1/1 timestamp 1/1 apps 1/1"; strings.Join(got, " ") != want {
		t.Errorf("repo keys --json = %q, want %q", got, want)
	}

	// Without one of the two targets keys, publishing fails with one line.
	if err := os.Remove(filepath.Join(repo, "keys", "targets-2.key")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runRepoVerbs(t, "publish", repo, "--release", writeBuild(t, "2.0.0", "image two"))
	if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "signing targets: 1 of its keys present") || !strings.Contains(stderr, "2 needed") {
		t.Errorf("publish without targets-2.key = exit %d, stderr %q; want a one-line threshold error", code, stderr)
	}
	t.Logf("stderr: %s", stderr)
}

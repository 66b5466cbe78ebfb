package plumb

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/internal/fstree"
)

func runDeltaVerb(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Stdout: &out, Stderr: &errb, Log: cli.NewLogger(&errb, false)}
	root := &cobra.Command{Use: "plumb", SilenceUsage: true, SilenceErrors: true}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.BadInput(err) })
	root.AddCommand(newDeltaCmd(e))
	err := root.ExecuteContext(t.Context())
	if err != nil && cli.IsCobraUsageError(err) {
		err = cli.BadInput(err)
	}
	code = cli.ExitCode(err, &errb, "plumb")
	return code, out.String(), errb.String()
}

// writeSquashfs writes files as a real squashfs image (builder/squashfs).
func writeSquashfs(t *testing.T, path string, files map[string]string) {
	t.Helper()
	ft := fstree.New()
	for p, c := range files {
		if err := ft.Put(p, &fstree.Node{Mode: fs.FileMode(0o644), ModTime: 1000, Size: int64(len(c)), Source: fstree.Bytes([]byte(c))}); err != nil {
			t.Fatal(err)
		}
	}
	ft.SetTimes(1000, false)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := squashfs.Write(t.Context(), f, ft, squashfs.Options{ModTime: 1000, Workers: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestDeltaVerb(t *testing.T) {
	dir := t.TempDir()
	var big strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&big, "line %d of a file that changes a little\n", i)
	}
	oldFiles := map[string]string{"/etc/os-release": "VERSION=1\n", "/usr/lib/big": big.String()}
	newFiles := map[string]string{"/etc/os-release": "VERSION=2\n", "/usr/lib/big": strings.Replace(big.String(), "line 777 ", "LINE 777 ", 1)}
	oldImg, newImg := filepath.Join(dir, "old.sqfs"), filepath.Join(dir, "new.sqfs")
	writeSquashfs(t, oldImg, oldFiles)
	// NEW as a build directory.
	buildDir := filepath.Join(dir, "build-2")
	os.Mkdir(buildDir, 0o755)
	writeSquashfs(t, filepath.Join(buildDir, "rootfs.sqfs"), newFiles)
	out := filepath.Join(dir, "out", "v2.delta")
	os.Mkdir(filepath.Dir(out), 0o755)

	code, stdout, stderr := runDeltaVerb(t, "delta", oldImg, buildDir, "-o", out)
	if code != 0 {
		t.Fatalf("plumb delta: exit %d, stderr %q", code, stderr)
	}
	t.Logf("plumb delta:\n%s", stdout)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(out) + `: \d+ bytes \(\d+\.\d\d% of the new image's \d+ bytes\) in \d+\.\ds\n`).MatchString(stdout) {
		t.Errorf("output %q lacks the size line", stdout)
	}
	// The bundle turns OLD into NEW.
	oldB, _ := os.ReadFile(oldImg)
	newB, _ := os.ReadFile(filepath.Join(buildDir, "rootfs.sqfs"))
	bundle, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) >= len(newB)/4 {
		t.Errorf("bundle is %d bytes for a %d-byte image with one line changed, want far smaller", len(bundle), len(newB))
	}
	var got bytes.Buffer
	if _, err := wire.Apply(t.Context(), &got, bytes.NewReader(oldB), int64(len(oldB)), bytes.NewReader(bundle)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(got.Bytes(), newB) {
		t.Errorf("Apply gives %d bytes that differ from NEW's %d", got.Len(), len(newB))
	}

	// Bad input: one line, exit 2, the output left as it was.
	notSqfs := filepath.Join(dir, "notes.txt")
	os.WriteFile(notSqfs, []byte("these are not the droids you are looking for"), 0o644)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("hs"), 0o644)
	badTail := filepath.Join(dir, "bad-tail.sqfs")
	b := append([]byte(nil), oldB...)
	for i := 96; i < len(b); i++ {
		b[i] = 0xff
	}
	os.WriteFile(badTail, b, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delta", filepath.Join(dir, "missing"), newImg, "-o", out}, `missing: expected a rootfs\.sqfs or a plumb build directory: no such file or directory`},
		{[]string{"delta", dir + "/out", newImg, "-o", out}, `expected a plumb build directory holding rootfs\.sqfs, got none`},
		{[]string{"delta", notSqfs, oldImg, "-o", out}, `notes\.txt: squashfs magic: expected "hsqs", got "thes"`},
		{[]string{"delta", short, oldImg, "-o", out}, `short: expected a squashfs root image, got a file shorter than a superblock`},
		{[]string{"delta", badTail, oldImg, "-o", out}, `bad-tail\.sqfs -> .*old\.sqfs: delta: old image: `},
		{[]string{"delta", oldImg, oldImg}, `required flag\(s\) "output" not set`},
	} {
		code, _, stderr := runDeltaVerb(t, tc.args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !regexp.MustCompile(tc.want).MatchString(stderr) {
			t.Errorf("plumb %s: exit %d, stderr %q; want exit 2 and one line matching %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
		if after, _ := os.ReadFile(out); !bytes.Equal(after, bundle) {
			t.Errorf("plumb %s changed %s", strings.Join(tc.args, " "), out)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("output directory holds %d entries, want only the bundle (no temp files)", len(entries))
	}
}

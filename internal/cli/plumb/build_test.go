package plumb

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/internal/testutil"
)

// TestBuildBadRecipes runs `plumb build` on every malformed recipe the
// recipe package keeps: each must fail with exit code 2 and one line on
// stderr naming the problem, and write nothing.
func TestBuildBadRecipes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "builder", "recipe", "testdata", "bad", "*.yaml"))
	if err != nil || len(files) < 15 {
		t.Fatalf("found %d malformed recipes (err %v), want at least 15", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wantComment(t, f)
			out := filepath.Join(t.TempDir(), "out")
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), []string{"build", f, "-o", out, "-q"}, &stdout, &stderr)
			if code != cli.ExitBadInput {
				t.Errorf("exit code %d, want %d; stderr: %s", code, cli.ExitBadInput, stderr.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, want) {
				t.Errorf("stderr = %q, want one line containing %q", msg, want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory exists after a failed build (stat: %v)", err)
			}
		})
	}
}

func wantComment(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			return w
		}
	}
	t.Fatalf("%s has no '# want:' line", path)
	return ""
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"build"}, "accepts 1 arg"},
		{[]string{"build", "x.yaml"}, `required flag(s) "output" not set`},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"build", "--bogus", "x"}, "unknown flag: --bogus"},
		{[]string{"vm", "run", "/nonexistent.img"}, "image: stat /nonexistent.img"},
		{[]string{"vm", "run", "--until", "(", "x"}, "--until: expected a regular expression"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), tt.args, &stdout, &stderr)
		if code != cli.ExitBadInput || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("plumb %q = exit %d, stderr %q; want exit 2 and one line containing %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

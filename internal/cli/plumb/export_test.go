package plumb

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/internal/cli"
)

// TestExportBadInput: bad flags and a release the repository does not
// have are one line each, exit 2, and nothing is written.
func TestExportBadInput(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := tufrepo.Init(t.Context(), repo, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "stick.img")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"export", repo, "--hardware", "qemu", "-o", out}, `plumb: export: no release for hardware "qemu" in the repository (it has none)`},
		{[]string{"export", repo, "--hardware", "qemu", "--version", "9.9", "-o", out}, `plumb: export: no release 9.9 for hardware "qemu" in the repository`},
		{[]string{"export", repo, "--hardware", "qemu", "--fs", "ntfs", "-o", out}, `plumb: --fs: expected ext4 or fat, got "ntfs"`},
		{[]string{"approve", repo, "--hardware", "qemu", "--version", "1.0"}, "plumb: expected --all, --group G or --device ID"},
		{[]string{"approve", repo, "--hardware", "qemu", "--version", "1.0", "--device", "abc"}, `plumb: approve: release facts: approved.devices[0]: expected a 16-character device id, got "abc"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(t.Context(), tt.args, &stdout, &stderr)
		if code != cli.ExitBadInput || strings.TrimSpace(stderr.String()) != tt.want {
			t.Errorf("plumb %s = exit %d, %q; want exit 2, %q", strings.Join(tt.args, " "), code, stderr.String(), tt.want)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*")); len(matches) != 0 {
		t.Errorf("files left: %v", matches)
	}
}

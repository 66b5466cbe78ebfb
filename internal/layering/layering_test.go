package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/plumb-os/plumb/"

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func under(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == module+d || strings.HasPrefix(pkg, module+d+"/") {
			return true
		}
	}
	return false
}

// TestImports checks who imports whom among the repository's packages
// (not counting tests: an integration test may build an image).
func TestImports(t *testing.T) {
	rules := []struct {
		from   string
		banned []string
	}{
		{"builder", []string{"updater", "attest", "server"}},
		{"updater", []string{"builder", "server", "attest", "testvm"}},
		{"attest", []string{"builder", "updater", "server"}},
		{"server", []string{"updater"}},
		{"internal/cli/plumb", []string{"internal/cli/plumbd"}},
		{"internal/cli/plumbd", []string{"internal/cli/plumb"}},
		{"format", []string{"builder", "updater", "attest", "server", "testvm", "internal/cli"}},
	}
	for _, line := range goList(t, "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...") {
		f := strings.Fields(line)
		for _, r := range rules {
			if !under(f[0], r.from) {
				continue
			}
			for _, imp := range f[1:] {
				if under(imp, r.banned...) {
					t.Errorf("%s imports %s: %s must not import %s (see internal/layering/doc.go)", f[0], imp, r.from, strings.Join(r.banned, ", "))
				}
			}
		}
	}
}

// TestPlumbdDeps: the device agent links no build-side code.
func TestPlumbdDeps(t *testing.T) {
	deps := goList(t, "-deps", "./cmd/plumbd")
	banned := []string{
		module + "builder", module + "server", module + "testvm",
		"pault.ag/go/debian",                // the Debian package reader
		"github.com/u-root/u-root/pkg/cpio", // the cpio writer
		"github.com/schollz/progressbar",    // progress bars
		module + "internal/progress",        // plumb's progress output
		"go.yaml.in/yaml",                   // recipes and workload YAML are build side
		module + "internal/cli/plumb",
	}
	for _, p := range deps {
		for _, b := range banned {
			if p == b || strings.HasPrefix(p, b+"/") {
				t.Errorf("plumbd links %s (banned: %s)", p, b)
			}
		}
	}
	t.Logf("plumbd links %d packages", len(deps))
}

// TestPlumbInitDeps: the early init stays small.
func TestPlumbInitDeps(t *testing.T) {
	allowed := []string{
		module + "cmd/plumb-init", module + "updater/earlyinit", module + "internal/ctxio",
		module + "format/bootrecord", module + "format/disklayout", module + "format/release", module + "format/verity",
		"golang.org/x/sys/unix", "github.com/diskfs/go-diskfs/partition", "github.com/diskfs/go-diskfs/backend",
		"github.com/google/uuid", // go-diskfs's GPT reader
		// The sealed data partition (recipe partitions.data_encryption):
		// its LUKS2 volume, the TPM policy session and unseal, XTS.
		module + "updater/datacrypt", module + "format/datapart",
		"github.com/google/go-tpm/tpm2", "github.com/google/go-tpm/tpmutil", "github.com/google/go-tpm/legacy/tpm2", "golang.org/x/crypto/xts", "golang.org/x/crypto/internal/alias",
	}
	deps := goList(t, "-deps", "./cmd/plumb-init")
next:
	for _, p := range deps {
		if !strings.Contains(strings.Split(p, "/")[0], ".") || strings.HasPrefix(p, "vendor/") {
			continue // standard library
		}
		for _, a := range allowed {
			if p == a || strings.HasPrefix(p, a+"/") {
				continue next
			}
		}
		t.Errorf("plumb-init links %s: it must stay small (allowed: the standard library and %s)", p, strings.Join(allowed, ", "))
	}
	t.Logf("plumb-init links %d packages", len(deps))
}

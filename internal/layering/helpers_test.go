package layering

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// copies matches a private copy of a helper that exists once in internal/:
// counting readers and writers, hash and error writers (internal/iox),
// context-aware readers (internal/ctxio), errors with an exit class
// (internal/errclass), YAML node descriptions (internal/yamlnode).
var copies = regexp.MustCompile(`(?m)^type (count\w*(Reader|Writer)|hash\w*Writer|err\w*Writer|ctx\w*Reader|classified|classed|inputError) struct|^func (describe|abbrev)\(n? ?\*?yaml`)

// homes are where the helpers live.
var homes = []string{"internal/iox/", "internal/ctxio/", "internal/errclass/", "internal/yamlnode/"}

// TestHelpersOnce fails when a helper of internal/ is written again.
func TestHelpersOnce(t *testing.T) {
	root := "../.."
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		for _, h := range homes {
			if strings.HasPrefix(filepath.ToSlash(rel), h) {
				return nil
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if m := copies.Find(b); m != nil {
			t.Errorf("%s: %q: use the one in %s", rel, m, strings.Join(homes, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package format_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/plumb-os/plumb/"

// zstdUsers may link zstd: the block codec is part of the format (see the
// package doc).
var zstdUsers = map[string]bool{module + "format/blockcodec": true, module + "format/delta": true}

// helpers are the internal/ packages the layer may use; each imports only
// the standard library (checked below).
var helpers = map[string]bool{module + "internal/ctxio": true}

// TestLayer holds the rule of the contracts layer: a package under format/
// imports the standard library, other format/ packages, the helpers above
// and, for the block codec, zstd. Nothing else.
func TestLayer(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...", "../internal/ctxio").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		for _, imp := range imports {
			switch {
			case !strings.Contains(strings.Split(imp, "/")[0], "."): // standard library
			case helpers[pkg]:
				t.Errorf("%s (a helper of the format layer) imports %s: expected the standard library only", pkg, imp)
			case strings.HasPrefix(imp, module+"format/") || helpers[imp]:
			case zstdUsers[pkg] && (strings.HasPrefix(imp, "github.com/DataDog/zstd") || strings.HasPrefix(imp, "github.com/klauspost/compress/zstd")):
			default:
				t.Errorf("%s imports %s: the format layer imports only the standard library and itself (see format/doc.go)", pkg, imp)
			}
		}
	}
}

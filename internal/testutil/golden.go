package testutil

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// Update is the -update flag: tests rewrite their golden files
// (testdata/*.golden*) instead of comparing with them.
var Update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Golden compares got with the golden file at path (relative to the test's
// package), or writes it with -update.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the writer makes now (a format change? then go test -update, and keep the previous release's fixture readable):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// ReadFixture reads a fixture file (a previous release's output).
func ReadFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

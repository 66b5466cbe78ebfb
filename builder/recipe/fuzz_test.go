package recipe

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic and that every error is
// one line carrying the file name and matching ErrInvalid. The seed corpus
// is every recipe in testdata.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("fuzz.yaml", data, "")
		if err == nil {
			if r == nil {
				t.Fatal("Parse returned nil recipe and nil error")
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("Parse accepted a recipe that Validate rejects: %v", err)
			}
			return
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("error spans lines: %q", msg)
		}
		if !strings.HasPrefix(msg, "fuzz.yaml:") {
			t.Fatalf("error does not start with the file name and line: %q", msg)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not match ErrInvalid: %q", msg)
		}
	})
}

package reconcile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/workload"
)

// linkTree makes a group directory holding what a workload could have
// planted: links to / and upwards, a link inside a real directory, a
// regular file where a directory is expected.
func linkTree(t testing.TB) (dataDir string) {
	t.Helper()
	dataDir = filepath.Join(t.TempDir(), "apps")
	g := filepath.Join(dataDir, "g")
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(g, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"root": "/", "a/up": "../..", "a/b/self": ".", "c/abs": g} {
		if err := os.Symlink(to, filepath.Join(g, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(g, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dataDir
}

// TestMountSource: real directories open (missing ones are created); a
// link or a file anywhere on the way is refused with one line.
func TestMountSource(t *testing.T) {
	data := linkTree(t)
	for _, tt := range []struct{ source, err string }{
		{"a/b", ""},
		{"new/deeper", ""},
		{".", ""},
		{"root", "g/root is a symbolic link: refused"},
		{"root/etc", "g/root is a symbolic link: refused"},
		{"a/up/x", "g/a/up is a symbolic link: refused"},
		{"a/b/self", "g/a/b/self is a symbolic link: refused"},
		{"c/abs/a", "g/c/abs is a symbolic link: refused"},
		{"file", "g/file is not a directory: refused"},
		{"file/x", "g/file is not a directory: refused"},
	} {
		f, err := mountSource(data, "g", tt.source)
		if tt.err == "" {
			if err != nil {
				t.Errorf("mountSource(%s) = %v", tt.source, err)
				continue
			}
			got, _ := os.Readlink("/proc/self/fd/" + itoa(f.Fd()))
			if want := filepath.Join(data, "g", tt.source); got != want {
				t.Errorf("mountSource(%s) opened %s, want %s", tt.source, got, want)
			}
			f.Close()
			continue
		}
		if err == nil {
			f.Close()
			t.Errorf("mountSource(%s) = ok, want refused", tt.source)
		} else if !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
			t.Errorf("mountSource(%s) = %q, want one line with %q", tt.source, err, tt.err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(data, "g", "new", "deeper")); err != nil || !fi.IsDir() {
		t.Errorf("new/deeper not created: %v", err)
	}
}

// FuzzMountSource: for any source the manifest accepts, mountSource either
// refuses or opens exactly DATA/g/<source>: no link is ever followed, so
// the opened directory is the lexical path.
func FuzzMountSource(f *testing.F) {
	for _, s := range []string{"a/b", "root/etc", "a/up/up/x", "a/b/self/self", "c/abs/c/abs", "file", ".", "new/x/y"} {
		f.Add(s)
	}
	// One tree per fuzzing process: the directories mountSource creates
	// are real ones and leave every planted link in place.
	data := linkTree(f)
	f.Fuzz(func(t *testing.T, source string) {
		c := workload.Container{Name: "a", Image: "r.example/x@sha256:" + strings.Repeat("a", 64), Mounts: []workload.Mount{{Source: source, Target: "/m"}}}
		if (&workload.Manifest{Containers: []workload.Container{c}}).Validate("g") != nil {
			return
		}
		file, err := mountSource(data, "g", source)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		defer file.Close()
		got, err := os.Readlink("/proc/self/fd/" + itoa(file.Fd()))
		if want := filepath.Join(data, "g", source); err != nil || got != want {
			t.Errorf("mountSource(%q) opened %s (%v), want %s", source, got, err, want)
		}
	})
}

func itoa(fd uintptr) string { return strconv.Itoa(int(fd)) }

package media

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbe: filesystems made by the real mkfs tools are recognised with
// their label.
func TestProbe(t *testing.T) {
	for _, tt := range []struct {
		typ  string
		mkfs []string
	}{
		{Ext4, []string{"mkfs.ext4", "-q", "-F", "-L", Label}},
		{VFAT, []string{"mkfs.vfat", "-n", Label}},
		{VFAT, []string{"mkfs.vfat", "-F", "32", "-n", Label}},
	} {
		img := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(img, 40<<20)
		if out, err := exec.Command(tt.mkfs[0], append(tt.mkfs[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", tt.mkfs, err, out)
		}
		typ, label, err := Probe(img)
		if typ != tt.typ || label != Label || err != nil {
			t.Errorf("Probe(%v) = %q, %q, %v; want %s, %s", tt.mkfs, typ, label, err, tt.typ, Label)
		}
	}
}

// TestBadMedia: an unreadable stick and one without an export are one
// line each, naming the device and what was expected.
func TestBadMedia(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte(strings.Repeat("not a filesystem ", 200)), 0o644)
	if typ, label, err := Probe(junk); typ != "" || label != "" || err != nil {
		t.Errorf("Probe(junk) = %q, %q, %v; want nothing", typ, label, err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"unreadable", func() error { _, err := Mount(junk, filepath.Join(dir, "mnt")); return err }(),
			"update medium " + junk + ": expected an ext4 or FAT filesystem (plumb export -o FILE.img), found neither"},
		{"missing", func() error { _, err := Mount(filepath.Join(dir, "sdz"), filepath.Join(dir, "mnt")); return err }(),
			"update medium " + filepath.Join(dir, "sdz") + ": unreadable: open " + filepath.Join(dir, "sdz") + ": no such file or directory"},
		{"no export", Check(dir),
			"update medium " + dir + ": no Plumb update on it: metadata/timestamp.json is missing (expected what plumb export writes: metadata/ and targets/)"},
	} {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}

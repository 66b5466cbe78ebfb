package medium

// Images checked with the real tools (fsck.ext4, debugfs, fsck.vfat,
// mtype) and with plumbd's own probe (media.Probe), which must find the
// label.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/updater/media"
)

func TestWriteImage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "export")
	long := "targets/qemu/2.0.0/" + strings.Repeat("ab", 32) + ".rootfs.sqfs"
	for name, data := range map[string]string{
		"metadata/root.json": `{"signed":{}}`, "metadata/timestamp.json": "{}", long: "image bytes",
	} {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, fs := range []string{Ext4, FAT} {
		t.Run(fs, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "stick.img")
			if err := WriteImage(t.Context(), src, img, fs); err != nil {
				t.Fatal(err)
			}
			typ, label, err := media.Probe(img)
			want := map[string]string{Ext4: media.Ext4, FAT: media.VFAT}[fs]
			if err != nil || typ != want || label != media.Label {
				t.Errorf("Probe = %q, %q, %v; want %s labelled %s", typ, label, err, want, media.Label)
			}
			var check, read *exec.Cmd
			if fs == Ext4 {
				check = exec.Command("fsck.ext4", "-fn", img)
				read = exec.Command("debugfs", "-R", "cat /"+long, img)
			} else {
				check = exec.Command("fsck.vfat", "-n", img)
				read = exec.Command("mtype", "-i", img, "::/"+long)
			}
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", check, err, out)
			}
			if out, err := read.Output(); err != nil || string(out) != "image bytes" {
				t.Errorf("%s = %q, %v; want the target's bytes", read, out, err)
			}
		})
	}
	if err := WriteImage(t.Context(), src, filepath.Join(t.TempDir(), "x.img"), "ntfs"); err == nil || err.Error() != `medium: filesystem: expected ext4 or fat, got "ntfs"` {
		t.Errorf("WriteImage(ntfs) = %v", err)
	}
}

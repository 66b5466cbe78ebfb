package medium

// Images checked with the real tools: blkid (type and label), fsck.ext4,
// debugfs, fsck.vfat, mtype.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	format "github.com/plumb-os/plumb/format/medium"
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
			out, err := exec.Command("blkid", "-o", "export", img).Output()
			want := map[string]string{Ext4: "TYPE=ext4", FAT: "TYPE=vfat"}[fs]
			if err != nil || !strings.Contains(string(out), "LABEL="+format.Label+"\n") || !strings.Contains(string(out), want+"\n") {
				t.Errorf("blkid = %q, %v; want %s labelled %s", out, err, want, format.Label)
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

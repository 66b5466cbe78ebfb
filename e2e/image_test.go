package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/testutil"
)

// extractPartition copies one partition of the disk image into a file of
// its own, so the filesystem tools can check it.
func extractPartition(t *testing.T, disk string, p builder.Partition) string {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), p.Name+".img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func partition(t *testing.T, m *builder.Manifest, name string) builder.Partition {
	t.Helper()
	for _, p := range m.Partitions {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("manifest has no partition %q: %+v", name, m.Partitions)
	return builder.Partition{}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDemoImage checks every part of the demo disk with the real tools.
func TestDemoImage(t *testing.T) {
	dir, m := demoBuild(t)
	for _, tool := range [][2]string{{"sgdisk", "gdisk"}, {"fsck.vfat", "dosfstools"}, {"unsquashfs", "squashfs-tools"}, {"fsck.ext4", "e2fsprogs"}, {"mdir", "mtools"}} {
		testutil.RequireTool(t, tool[0], tool[1])
	}
	disk := filepath.Join(dir, builder.DiskFile)

	if out := run(t, "sgdisk", "-v", disk); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %s", out)
	}
	if len(m.Partitions) != 4 {
		t.Fatalf("manifest lists %d partitions, want 4", len(m.Partitions))
	}

	esp := extractPartition(t, disk, partition(t, m, disklayout.NameESP))
	run(t, "fsck.vfat", "-n", esp)
	entries := run(t, "mdir", "-b", "-i", esp, "::/loader/entries")
	if !strings.Contains(entries, "plumb-"+m.Version+".conf") {
		t.Errorf("ESP loader entries = %q, want plumb-%s.conf", entries, m.Version)
	}
	for _, f := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/plumb/a/vmlinuz", "::/plumb/a/initrd.img", "::/loader/loader.conf"} {
		run(t, "mdir", "-i", esp, f)
	}

	root := extractPartition(t, disk, partition(t, m, disklayout.NameRootA))
	list := run(t, "unsquashfs", "-l", root)
	for _, want := range []string{"squashfs-root/boot/vmlinuz", "squashfs-root/boot/initrd.img", "squashfs-root/usr/bin/plumbd", "squashfs-root/sbin/init", "squashfs-root/etc/plumb/release.json"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("unsquashfs -l of root-a lacks %s", want)
		}
	}
	// Slot A holds exactly the release image.
	rootfs := filepath.Join(dir, builder.RootfsFile)
	fi, _ := os.Stat(rootfs)
	if got, want := sha256Prefix(t, root, fi.Size()), sha256File(t, rootfs); got != want {
		t.Errorf("slot A's first %d bytes hash to %s, want the release image's %s", fi.Size(), got, want)
	}

	data := extractPartition(t, disk, partition(t, m, disklayout.NameData))
	run(t, "fsck.ext4", "-fn", data)
}

// TestReproducible builds the demo recipe a second time, seconds later, and
// compares every artifact's bytes with the first build.
func TestReproducible(t *testing.T) {
	dir, m := demoBuild(t)
	time.Sleep(2100 * time.Millisecond) // FAT keeps 2-second times: catch clock leaks
	dir2 := filepath.Join(t.TempDir(), "again")
	m2, err := buildRecipe(t.Context(), demoRecipe(t), dir2)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range m.Artifacts {
		b := m2.Artifacts[i]
		if a != b {
			t.Errorf("artifact %s differs between two builds: %+v vs %+v", a.Name, a, b)
		}
		if got := sha256File(t, filepath.Join(dir2, b.Name)); got != b.SHA256 {
			t.Errorf("%s: manifest says sha256 %s, file has %s", b.Name, b.SHA256, got)
		}
		t.Logf("%-12s %10d bytes sha256 %s (both builds)", a.Name, a.Size, a.SHA256)
	}
	if sha256File(t, filepath.Join(dir, builder.ManifestFile)) != sha256File(t, filepath.Join(dir2, builder.ManifestFile)) {
		t.Error("manifest.json differs between two builds")
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Prefix(t, path, fi.Size())
}

func sha256Prefix(t *testing.T, path string, n int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

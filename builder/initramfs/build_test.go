package initramfs

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/u-root/u-root/pkg/cpio"
)

const testModTime = 1700000000

func build(t *testing.T, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(t.Context(), &buf, opts); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes()
}

func records(t *testing.T, archive []byte) map[string]cpio.Record {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatalf("reading cpio: %v", err)
	}
	m := map[string]cpio.Record{}
	for _, r := range recs {
		if _, dup := m[r.Name]; dup {
			t.Errorf("cpio entry %s appears twice", r.Name)
		}
		m[r.Name] = r
	}
	return m
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuildDeterministic(t *testing.T) {
	opts := Options{Init: fakeInit(t), KernelTree: kernelTree(t), KernelRelease: testRelease,
		Modules: []string{"virtio_blk", "squashfs", "overlay"}, ModTime: testModTime}
	a := build(t, opts)
	b := build(t, opts)
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds differ: %x vs %x", sha256.Sum256(a), sha256.Sum256(b))
	}
	if !bytes.HasPrefix(a, []byte("\x28\xb5\x2f\xfd")) {
		t.Errorf("archive starts with %x, want the zstd magic", a[:4])
	}
	opts.ModTime++
	if c := build(t, opts); bytes.Equal(a, c) {
		t.Errorf("builds with different ModTime are equal")
	}
	t.Logf("zstd initramfs: %d bytes", len(a))
}

func TestBuildContents(t *testing.T) {
	needTool(t, "cpio", "cpio")
	needTool(t, "zstd", "zstd")
	initBin := fakeInit(t)
	tree := kernelTree(t)
	extra := fstree.New()
	if err := extra.Put("etc/plumb/hello", &fstree.Node{Mode: 0o640, UID: 7, GID: 8, Size: 3, Source: fstree.Bytes("hi\n")}); err != nil {
		t.Fatal(err)
	}
	if err := extra.Put("bin/sh", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "busybox"}); err != nil {
		t.Fatal(err)
	}
	if err := extra.MkdirAll("run", 0); err != nil { // also a mount point Build makes: fine
		t.Fatal(err)
	}
	opts := Options{Init: initBin, KernelTree: tree, KernelRelease: testRelease,
		Modules: []string{"vfat"}, ModTime: testModTime, Extra: extra}
	compressed := build(t, opts)

	// The real zstd tool unpacks it, and that is the plain archive.
	dir := t.TempDir()
	zpath := filepath.Join(dir, "initrd.zst")
	if err := os.WriteFile(zpath, compressed, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), "zstd", "-d", "-q", zpath, "-o", filepath.Join(dir, "initrd")).CombinedOutput(); err != nil {
		t.Fatalf("zstd -d: %v: %s", err, out)
	}
	plain, err := os.ReadFile(filepath.Join(dir, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Compression = None
	if uncompressed := build(t, opts); !bytes.Equal(plain, uncompressed) {
		t.Errorf("zstd -d of the Zstd build differs from the None build")
	}

	mods := "lib/modules/" + testRelease + "/kernel/fs/fat/"
	wantNames := []string{
		"bin", "bin/sh", "dev", "dev/console", "etc", "etc/plumb", "etc/plumb/hello", "init",
		"lib", "lib/modules", "lib/modules/" + testRelease, "lib/modules/" + testRelease + "/kernel",
		"lib/modules/" + testRelease + "/kernel/fs", "lib/modules/" + testRelease + "/kernel/fs/fat",
		mods + "fat.ko", mods + "vfat.ko", "lib/modules/load-order",
		"newroot", "proc", "run", "sys",
	}
	slices.Sort(wantNames)

	// GNU cpio lists what the archive holds, in archive order.
	cmd := exec.CommandContext(t.Context(), "cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	got := strings.Fields(string(out))
	if !slices.Equal(got, wantNames) {
		t.Errorf("cpio -t = %q\nwant %q", got, wantNames)
	}

	recs := records(t, plain)
	inos := map[uint64]string{}
	for name, r := range recs {
		if name == cpio.Trailer {
			continue
		}
		if r.MTime != testModTime {
			t.Errorf("%s: mtime %d, want %d", name, r.MTime, testModTime)
		}
		if prev, ok := inos[r.Ino]; ok {
			t.Errorf("%s and %s share inode %d", name, prev, r.Ino)
		}
		inos[r.Ino] = name
	}
	checks := []struct {
		name string
		mode uint64
		uid  uint64
	}{
		{"init", cpio.S_IFREG | 0o755, 0},
		{"dev/console", cpio.S_IFCHR | 0o600, 0},
		{"newroot", cpio.S_IFDIR | 0o755, 0},
		{mods + "vfat.ko", cpio.S_IFREG | 0o644, 0},
		{"etc/plumb/hello", cpio.S_IFREG | 0o640, 7},
		{"bin/sh", cpio.S_IFLNK | 0o777, 0},
	}
	for _, c := range checks {
		r := recs[c.name]
		if r.Mode != c.mode || r.UID != c.uid {
			t.Errorf("%s: mode %#o uid %d, want mode %#o uid %d", c.name, r.Mode, r.UID, c.mode, c.uid)
		}
	}
	if r := recs["dev/console"]; r.Rmajor != 5 || r.Rminor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", r.Rmajor, r.Rminor)
	}
	wantInit, _ := os.ReadFile(initBin)
	if got := content(t, recs["init"]); got != string(wantInit) {
		t.Errorf("init content differs from %s", initBin)
	}
	wantKo, _ := os.ReadFile(filepath.Join(kernel(t), mods, "vfat.ko"))
	if got := content(t, recs[mods+"vfat.ko"]); got != string(wantKo) {
		t.Errorf("vfat.ko content differs from the kernel's")
	}
	if got, want := content(t, recs["lib/modules/load-order"]), "/"+mods+"fat.ko\n/"+mods+"vfat.ko\n"; got != want {
		t.Errorf("load-order = %q, want %q", got, want)
	}
	if got := content(t, recs["bin/sh"]); got != "busybox" {
		t.Errorf("bin/sh -> %q, want busybox", got)
	}
}

// TestBuildDecompressesModules checks that .ko.xz and .ko.zst modules land
// in the archive as the plain .ko.
func TestBuildDecompressesModules(t *testing.T) {
	tree, fat, vfat := compressedKernelTree(t)
	tmp := t.TempDir()
	recs := records(t, build(t, Options{Init: fakeInit(t), KernelTree: tree, KernelRelease: testRelease,
		Modules: []string{"vfat"}, ModTime: testModTime, Compression: None, TempDir: tmp}))
	mods := "lib/modules/" + testRelease + "/kernel/fs/fat/"
	for name, src := range map[string]string{mods + "fat.ko": fat, mods + "vfat.ko": vfat} {
		want, _ := os.ReadFile(src)
		r, ok := recs[name]
		if !ok {
			t.Errorf("%s missing from the archive", name)
			continue
		}
		if got := content(t, r); got != string(want) {
			t.Errorf("%s: %d bytes differing from the uncompressed module (%d bytes)", name, len(got), len(want))
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Build left %d temporary files in TempDir", len(left))
	}
}

func TestBuildHardLinks(t *testing.T) {
	extra := fstree.New()
	if err := extra.Put("bin/busybox", &fstree.Node{Mode: 0o755, Size: 4, Source: fstree.Bytes("bbox")}); err != nil {
		t.Fatal(err)
	}
	if err := extra.Link("bin/busybox", "bin/ls"); err != nil {
		t.Fatal(err)
	}
	recs := records(t, build(t, Options{Init: fakeInit(t), ModTime: testModTime, Extra: extra, Compression: None}))
	a, b := recs["bin/busybox"], recs["bin/ls"]
	if a.Ino != b.Ino || a.NLink != 2 || b.NLink != 2 {
		t.Errorf("hard links: ino %d/%d nlink %d/%d, want one inode with nlink 2", a.Ino, b.Ino, a.NLink, b.NLink)
	}
	if a.FileSize+b.FileSize != 4 {
		t.Errorf("hard links carry %d+%d bytes, want the 4 bytes once", a.FileSize, b.FileSize)
	}
}

func TestBuildErrors(t *testing.T) {
	initBin := fakeInit(t)
	clash := fstree.New()
	if err := clash.Put("init", &fstree.Node{Mode: 0o755, Size: 1, Source: fstree.Bytes("x")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no init", Options{}, "Init: expected the host path"},
		{"missing init", Options{Init: filepath.Join(t.TempDir(), "nope")}, "no such file"},
		{"init is a dir", Options{Init: t.TempDir()}, "expected a regular file"},
		{"extra clash", Options{Init: initBin, Extra: clash}, "extra file /init: collides"},
		{"bad mtime", Options{Init: initBin, ModTime: -1}, "ModTime: expected seconds"},
		{"bad compression", Options{Init: initBin, Compression: 7}, "Compression: expected Zstd or None, got 7"},
		{"modules without tree", Options{Init: initBin, Modules: []string{"vfat"}, KernelRelease: testRelease}, "kernel tree is nil"},
	}
	for _, tt := range tests {
		err := Build(t.Context(), io.Discard, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Build error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestZstdReaderAcceptsOutput guards the choice of encoder options: the
// output must be a single standard frame stream.
func TestZstdReaderAcceptsOutput(t *testing.T) {
	out := build(t, Options{Init: fakeInit(t), ModTime: testModTime})
	zr, err := zstd.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(plain, []byte("070701")) {
		t.Errorf("decompressed archive starts with %q, want the newc magic 070701", plain[:6])
	}
}

// TestBuildMergedUsr: a root whose modules live in usr/lib/modules (lib is
// a symlink) gives the same archive paths as lib/modules.
func TestBuildMergedUsr(t *testing.T) {
	src := filepath.Join(kernel(t), "lib/modules", testRelease, "kernel/fs/fat")
	tree := fstree.New()
	if err := tree.Put("lib", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "usr/lib"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"fat.ko", "vfat.ko"} {
		fi, err := os.Stat(filepath.Join(src, m))
		if err != nil {
			t.Fatal(err)
		}
		n := &fstree.Node{Mode: 0o644, Size: fi.Size(), Source: fstree.HostFile(filepath.Join(src, m))}
		if err := tree.Put("usr/lib/modules/"+testRelease+"/kernel/fs/fat/"+m, n); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, build(t, Options{Init: fakeInit(t), KernelTree: tree, KernelRelease: testRelease,
		Modules: []string{"vfat"}, ModTime: testModTime, Compression: None}))
	mods := "lib/modules/" + testRelease + "/kernel/fs/fat/"
	if got, want := content(t, recs["lib/modules/load-order"]), "/"+mods+"fat.ko\n/"+mods+"vfat.ko\n"; got != want {
		t.Errorf("load-order = %q, want %q", got, want)
	}
	for _, m := range []string{"fat.ko", "vfat.ko"} {
		if r, ok := recs[mods+m]; !ok || r.FileSize == 0 {
			t.Errorf("%s%s missing or empty in the archive", mods, m)
		}
	}
}

package diskimg

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/fstree"
)

const testModTime = 1700000000 // 2023-11-14T22:13:20Z

// tool returns the path of a host tool. A missing tool skips the test under
// -short and fails it otherwise, with the package that provides it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not found: apt-get install %s", name, pkg)
		}
		t.Fatalf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// runTool runs a tool and returns its combined output; it fails the test
// when the tool fails.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeSquashfs builds a small squashfs root image with mksquashfs.
func makeSquashfs(t *testing.T) string {
	t.Helper()
	mksquashfs := tool(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for p, content := range map[string]string{
		"etc/os-release": "NAME=plumb\n",
		"boot/vmlinuz":   strings.Repeat("kernel", 50000),
		"usr/bin/hello":  "#!/bin/sh\necho hello\n",
	} {
		full := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "root.sqfs")
	runTool(t, mksquashfs, tree, img, "-noappend", "-quiet", "-no-progress", "-comp", "zstd")
	return img
}

// testSpec returns a small, valid spec around the root image.
func testSpec(root string) Spec {
	return Spec{
		Layout: disklayout.Layout{ESPSize: 64 * disklayout.MiB, RootSize: 8 * disklayout.MiB, DataSize: 40 * disklayout.MiB, Seed: "edge-demo/qemu-x86_64"},
		ESP: []ESPFile{
			{Path: "/EFI/BOOT/BOOTX64.EFI", Source: fstree.Bytes(bytes.Repeat([]byte("EFI"), 30000)), Size: 90000},
			{Path: "/loader/loader.conf", Source: fstree.Bytes("timeout 0\n"), Size: 10},
			{Path: "/loader/entries/plumb-1.0.0+3.conf", Source: fstree.Bytes(testEntry), Size: int64(len(testEntry))},
			{Path: "/plumb/a/vmlinuz", Source: fstree.Bytes(bytes.Repeat([]byte{0x4d, 0x5a}, 700000)), Size: 1400000},
			{Path: "/plumb/a/initrd.img", Source: fstree.HostFile(root), Size: fileSize(root)},
		},
		RootA:    root,
		DataDirs: []string{"plumb/tuf", "plumb", "containerd"},
		ModTime:  testModTime,
	}
}

const testEntry = "title Plumb 1.0.0\nversion 1.0.0\nsort-key plumb\nlinux /plumb/a/vmlinuz\ninitrd /plumb/a/initrd.img\n"

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// extract copies one partition of the disk into its own file.
func extract(t *testing.T, disk string, p disklayout.Partition) string {
	t.Helper()
	src, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), p.Name+".img")
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
	return out
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestPartitions(t *testing.T) {
	l := disklayout.Layout{ESPSize: 64 * disklayout.MiB, RootSize: 100*disklayout.MiB + 1, DataSize: 256 * disklayout.MiB, Seed: "r/hw"}
	got := l.Partitions()
	want := []struct {
		index       int
		name, typ   string
		start, size int64
	}{
		{1, "ESP", disklayout.TypeESP, 1 * disklayout.MiB, 64 * disklayout.MiB},
		{2, "plumb-root-a", disklayout.TypeRootX8664, 65 * disklayout.MiB, 101 * disklayout.MiB},
		{3, "plumb-root-b", disklayout.TypeRootX8664, 166 * disklayout.MiB, 101 * disklayout.MiB},
		{4, "plumb-data", disklayout.TypeLinuxFS, 267 * disklayout.MiB, 256 * disklayout.MiB},
	}
	if len(got) != len(want) {
		t.Fatalf("Partitions() gave %d partitions, want %d", len(got), len(want))
	}
	uuids := map[string]bool{}
	for i, w := range want {
		g := got[i]
		if g.Index != w.index || g.Name != w.name || g.TypeGUID != w.typ || g.Start != w.start || g.Size != w.size {
			t.Errorf("Partitions()[%d] = %+v, want index %d name %s type %s start %d size %d", i, g, w.index, w.name, w.typ, w.start, w.size)
		}
		if len(g.PartUUID) != 36 || strings.ToLower(g.PartUUID) != g.PartUUID {
			t.Errorf("Partitions()[%d].PartUUID = %q, want a lower-case UUID", i, g.PartUUID)
		}
		uuids[g.PartUUID] = true
	}
	if len(uuids) != 4 {
		t.Errorf("Partitions() PartUUIDs are not distinct: %v", uuids)
	}
	if got, want := l.DiskSize(), int64(524*disklayout.MiB); got != want {
		t.Errorf("DiskSize() = %d, want %d", got, want)
	}

	// Same seed, other sizes (a new release): same UUIDs. Other seed: others.
	bigger := l
	bigger.RootSize = 200 * disklayout.MiB
	other := l
	other.Seed = "r/hw2"
	for i, p := range bigger.Partitions() {
		if p.PartUUID != got[i].PartUUID {
			t.Errorf("partition %d UUID changed with the sizes: %s, want %s", i+1, p.PartUUID, got[i].PartUUID)
		}
		if o := other.Partitions()[i].PartUUID; o == got[i].PartUUID {
			t.Errorf("partition %d UUID %s did not change with the seed", i+1, o)
		}
	}
}

func TestWriteBadInput(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.sqfs")
	if err := os.WriteFile(root, make([]byte, 3*disklayout.MiB), 0o644); err != nil {
		t.Fatal(err)
	}
	good := func() Spec {
		return Spec{
			Layout:   disklayout.Layout{ESPSize: disklayout.MinESPSize, RootSize: 4 * disklayout.MiB, DataSize: disklayout.MinDataSize, Seed: "s"},
			ESP:      []ESPFile{{Path: "/loader/loader.conf", Source: fstree.Bytes("timeout 0\n"), Size: 10}},
			RootA:    root,
			DataDirs: []string{"plumb"},
			ModTime:  testModTime,
		}
	}
	tests := []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"esp too small", func(s *Spec) { s.Layout.ESPSize = 16 * disklayout.MiB }, "partition ESP: layout.espSize is 16777216 bytes, below the minimum of 34603008 bytes (33 MiB)"},
		{"root too small", func(s *Spec) { s.Layout.RootSize = 1000 }, "partition plumb-root-a/plumb-root-b: layout.rootSize is 1000 bytes, below the minimum of 1048576 bytes (1 MiB)"},
		{"data too small", func(s *Spec) { s.Layout.DataSize = 8 * disklayout.MiB }, "partition plumb-data: layout.dataSize is 8388608 bytes, below the minimum of 33554432 bytes (32 MiB)"},
		{"root image larger than slot", func(s *Spec) { s.Layout.RootSize = 2 * disklayout.MiB }, "partition plumb-root-a: root image " + root + " needs 3145728 bytes, the partition holds 2097152 bytes (layout.rootSize)"},
		{"esp content too large", func(s *Spec) {
			s.ESP = append(s.ESP, ESPFile{Path: "/plumb/a/initrd.img", Source: fstree.HostFile(root), Size: 40 * disklayout.MiB})
		}, "partition ESP: content needs 41945600 bytes, the partition holds 34054144 bytes of 512-byte clusters (layout.espSize 34603008 bytes)"},
		{"no seed", func(s *Spec) { s.Layout.Seed = "" }, "layout.seed: expected a non-empty seed"},
		{"modtime before 1980", func(s *Spec) { s.ModTime = 0 }, "modTime: expected a time at or after 1980-01-01 (315532800, FAT's epoch), got 0 (1970-01-01T00:00:00Z)"},
		{"missing root image", func(s *Spec) { s.RootA = filepath.Join(dir, "nope.sqfs") }, "partition plumb-root-a: root image: stat " + filepath.Join(dir, "nope.sqfs") + ": no such file or directory"},
		{"no root image", func(s *Spec) { s.RootA = "" }, "rootA: expected the host path"},
		{"esp path escapes", func(s *Spec) { s.ESP[0].Path = "/../x" }, `esp[0].path: expected a file path like /EFI/BOOT/BOOTX64.EFI, got "/../x"`},
		{"esp path bad char", func(s *Spec) { s.ESP[0].Path = "/loader/a:b.conf" }, `esp[0].path: expected a file path like /EFI/BOOT/BOOTX64.EFI, got "/loader/a:b.conf": name "a:b.conf" holds ':', which FAT does not allow`},
		{"esp duplicate ignoring case", func(s *Spec) {
			s.ESP = append(s.ESP, ESPFile{Path: "/LOADER/Loader.conf", Source: fstree.Bytes("x"), Size: 1})
		}, `esp[1].path: "/LOADER/Loader.conf" is already on the ESP as a file (FAT names are case-insensitive)`},
		{"esp file where a directory is needed", func(s *Spec) {
			s.ESP = append(s.ESP, ESPFile{Path: "/loader/loader.conf/x", Source: fstree.Bytes("x"), Size: 1})
		}, `esp[1].path: "/loader/loader.conf/x" needs directory /loader/loader.conf, which is already a file`},
		{"data dir with space", func(s *Spec) { s.DataDirs = []string{"my dir"} }, `dataDirs[0]: expected a relative directory like "plumb/tuf", got "my dir": holds ' '`},
		{"esp size mismatch", func(s *Spec) { s.ESP[0].Size = 11 }, "writing partition ESP: writing /loader/loader.conf: source gave 10 bytes, expected size 11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "esp size mismatch" {
				tool(t, "mke2fs", "e2fsprogs")
			}
			s := good()
			tc.change(&s)
			out := filepath.Join(t.TempDir(), "disk.img")
			parts, err := Write(t.Context(), out, s)
			if err == nil {
				t.Fatalf("Write() = %v, nil; want error %q", parts, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Write() error = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Write() error spans lines: %q", err)
			}
			if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("after the error, %s: stat = %v, want not exist", out, serr)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	sgdisk := tool(t, "sgdisk", "gdisk")
	fsckVfat := tool(t, "fsck.vfat", "dosfstools")
	mdir := tool(t, "mdir", "mtools")
	mtype := tool(t, "mtype", "mtools")
	fsckExt4 := tool(t, "fsck.ext4", "e2fsprogs")
	debugfs := tool(t, "debugfs", "e2fsprogs")
	dumpe2fs := tool(t, "dumpe2fs", "e2fsprogs")
	blkid := tool(t, "blkid", "util-linux")
	tool(t, "mke2fs", "e2fsprogs")
	root := makeSquashfs(t)
	spec := testSpec(root)

	disk := filepath.Join(t.TempDir(), "disk.img")
	start := time.Now()
	parts, err := Write(t.Context(), disk, spec)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	t.Logf("Write of a %d MiB disk took %v", spec.Layout.DiskSize()/disklayout.MiB, time.Since(start))
	if want := spec.Layout.Partitions(); fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Errorf("Write() partitions = %v, want Partitions() = %v", parts, want)
	}
	if got, want := fileSize(disk), spec.Layout.DiskSize(); got != want {
		t.Errorf("disk size = %d, want %d", got, want)
	}

	t.Run("gpt", func(t *testing.T) {
		if out := runTool(t, sgdisk, "-v", disk); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v: %s", out)
		}
		out := runTool(t, sgdisk, "-p", disk)
		wantDisk := strings.ToUpper(disklayout.SeedUUID(spec.Layout.Seed, "disk"))
		if !strings.Contains(out, "Disk identifier (GUID): "+wantDisk) {
			t.Errorf("sgdisk -p does not show disk GUID %s:\n%s", wantDisk, out)
		}
		for _, p := range parts {
			first, last := p.Start/512, (p.Start+p.Size)/512-1
			line := fmt.Sprintf("%d %d %d", p.Index, first, last)
			found := false
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) >= 7 && strings.Join(f[:3], " ") == line && f[len(f)-1] == p.Name {
					found = true
				}
			}
			if !found {
				t.Errorf("sgdisk -p lacks partition %q (%s):\n%s", p.Name, line, out)
			}
			info := runTool(t, sgdisk, "-i", fmt.Sprint(p.Index), disk)
			for _, want := range []string{
				"Partition GUID code: " + p.TypeGUID,
				"Partition unique GUID: " + strings.ToUpper(p.PartUUID),
				"Partition name: '" + p.Name + "'",
			} {
				if !strings.Contains(info, want) {
					t.Errorf("sgdisk -i %d lacks %q:\n%s", p.Index, want, info)
				}
			}
		}
	})

	t.Run("esp", func(t *testing.T) {
		esp := extract(t, disk, parts[0])
		runTool(t, fsckVfat, "-n", esp)
		if out := runTool(t, mdir, "-i", esp, "::/loader/entries"); !strings.Contains(out, "plumb-1.0.0+3.conf") {
			t.Errorf("mdir ::/loader/entries lacks the entry:\n%s", out)
		}
		for _, f := range spec.ESP {
			got := runTool(t, mtype, "-i", esp, "::"+f.Path)
			if src := readSource(t, f.Source); got != src {
				t.Errorf("mtype %s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)", f.Path, len(got), sha256.Sum256([]byte(got)), len(src), sha256.Sum256([]byte(src)))
			}
		}
		id := seedVolumeID(spec.Layout.Seed)
		wantID := fmt.Sprintf("UUID=%04X-%04X", id>>16, id&0xffff)
		out := runTool(t, blkid, "-p", "-o", "export", esp)
		for _, want := range []string{wantID, "LABEL=ESP", "VERSION=FAT32"} {
			if !strings.Contains(out, want) {
				t.Errorf("blkid -p lacks %s:\n%s", want, out)
			}
		}
		checkFATTimes(t, disk, parts[0])
	})

	t.Run("data", func(t *testing.T) {
		data := extract(t, disk, parts[3])
		runTool(t, fsckExt4, "-fn", data)
		out := runTool(t, debugfs, "-R", "ls -l /plumb", data)
		if !strings.Contains(out, " tuf") {
			t.Errorf("debugfs ls -l /plumb lacks tuf:\n%s", out)
		}
		out = runTool(t, debugfs, "-R", "ls /", data)
		for _, want := range []string{"plumb", "containerd", "lost+found"} {
			if !strings.Contains(out, want) {
				t.Errorf("debugfs ls / lacks %s:\n%s", want, out)
			}
		}
		stamp := fmt.Sprintf("0x%08x:", testModTime)
		for _, d := range []string{"/", "/plumb", "/plumb/tuf", "/lost+found"} {
			out := runTool(t, debugfs, "-R", "stat "+d, data)
			for _, field := range []string{"ctime", "atime", "mtime", "crtime"} {
				if !strings.Contains(out, field+": "+stamp) {
					t.Errorf("debugfs stat %s: %s is not %s:\n%s", d, field, stamp, out)
				}
			}
		}
		out = runTool(t, dumpe2fs, "-h", data)
		for _, want := range []string{
			"Filesystem volume name:   plumb-data",
			"Filesystem UUID:          " + disklayout.SeedUUID(spec.Layout.Seed, "ext4/uuid"),
			"Directory Hash Seed:      " + disklayout.SeedUUID(spec.Layout.Seed, "ext4/hash-seed"),
			"Filesystem created:       Tue Nov 14 22:13:20 2023",
			"Block size:               4096",
			"metadata_csum",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dumpe2fs -h lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("roots", func(t *testing.T) {
		f, err := os.Open(disk)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n := fileSize(root)
		want := sha256File(t, root)
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, parts[1].Start, n)); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("root-a's first %d bytes: sha256 %s, want the squashfs image's %s", n, got, want)
		}
		// The rest of slot A and all of slot B are zeros.
		for _, r := range []struct {
			name       string
			start, len int64
		}{
			{"rest of root-a", parts[1].Start + n, parts[1].Size - n},
			{"root-b", parts[2].Start, parts[2].Size},
		} {
			if off, ok := allZero(t, io.NewSectionReader(f, r.start, r.len)); !ok {
				t.Errorf("%s: non-zero byte at offset %d", r.name, off)
			}
		}
	})
}

func readSource(t *testing.T, s fstree.Source) string {
	t.Helper()
	r, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func allZero(t *testing.T, r io.Reader) (int64, bool) {
	t.Helper()
	buf := make([]byte, disklayout.MiB)
	var off int64
	for {
		n, err := r.Read(buf)
		for i, b := range buf[:n] {
			if b != 0 {
				return off + int64(i), false
			}
		}
		off += int64(n)
		if err == io.EOF {
			return off, true
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkFATTimes reads the ESP back with go-diskfs and checks that every
// file and directory has the spec's ModTime.
func checkFATTimes(t *testing.T, disk string, p disklayout.Partition) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	esp, err := fat32.Read(file.New(f, true), p.Size, p.Start, 512)
	if err != nil {
		t.Fatalf("reading the ESP back: %v", err)
	}
	want := time.Unix(testModTime, 0).UTC()
	var walk func(dir string)
	walk = func(dir string) {
		entries, err := esp.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir(%s): %v", dir, err)
		}
		for _, e := range entries {
			if e.Name() == "." || e.Name() == ".." {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			p := path.Join(dir, e.Name())
			if !fi.ModTime().Equal(want) {
				t.Errorf("ESP %s: mtime %v, want %v", p, fi.ModTime(), want)
			}
			if e.IsDir() {
				walk(p)
			}
		}
	}
	walk(".") // go-diskfs's ReadDir takes io/fs paths
}

// TestESPSizes checks the FAT32 layout over ESP sizes, among them 64 MiB,
// where go-diskfs's own layout leaves two clusters without FAT entries.
func TestESPSizes(t *testing.T) {
	fsckVfat := tool(t, "fsck.vfat", "dosfstools")
	mdir := tool(t, "mdir", "mtools")
	for _, size := range []int64{33 * disklayout.MiB, 40 * disklayout.MiB, 64 * disklayout.MiB, 100 * disklayout.MiB, 128 * disklayout.MiB, 256 * disklayout.MiB, 260 * disklayout.MiB, 261 * disklayout.MiB, 512 * disklayout.MiB, 1024 * disklayout.MiB} {
		t.Run(fmt.Sprintf("%dMiB", size/disklayout.MiB), func(t *testing.T) {
			if g := espGeometry(size); !g.valid() || g.clusters < 65525 {
				t.Errorf("espGeometry(%d) = %+v, want a valid FAT32 layout with at least 65525 clusters", size, g)
			}
			img := filepath.Join(t.TempDir(), "esp.img")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
			spec := Spec{
				Layout:  disklayout.Layout{Seed: "s"},
				ESP:     []ESPFile{{Path: "/loader/entries/a+3.conf", Source: fstree.Bytes("title a\n"), Size: 8}},
				ModTime: testModTime,
			}
			if err := writeESP(t.Context(), f, disklayout.Partition{Name: disklayout.NameESP, Start: 0, Size: size}, spec); err != nil {
				t.Fatalf("writeESP: %v", err)
			}
			runTool(t, fsckVfat, "-n", img)
			if out := runTool(t, mdir, "-i", img, "::/loader/entries"); !strings.Contains(out, "a+3.conf") {
				t.Errorf("mdir lacks a+3.conf:\n%s", out)
			}
		})
	}
}

func TestWriteReproducible(t *testing.T) {
	tool(t, "mke2fs", "e2fsprogs")
	root := makeSquashfs(t)
	dir := t.TempDir()
	var sums []string
	for i := range 2 {
		if i > 0 {
			// Catch wall-clock leaks: FAT stores times in 2 s steps.
			time.Sleep(2100 * time.Millisecond)
		}
		disk := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if _, err := Write(t.Context(), disk, testSpec(root)); err != nil {
			t.Fatalf("Write #%d: %v", i+1, err)
		}
		sums = append(sums, sha256File(t, disk))
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds differ: sha256 %s and %s", sums[0], sums[1])
		if out, _ := exec.Command("cmp", "-l", filepath.Join(dir, "disk0.img"), filepath.Join(dir, "disk1.img")).Output(); len(out) > 0 {
			lines := strings.SplitN(string(out), "\n", 20)
			t.Logf("first differing bytes (offset, octal values):\n%s", strings.Join(lines[:min(len(lines), 19)], "\n"))
		}
	}

	// A different seed changes the IDs; a different ModTime the times.
	for _, change := range []func(*Spec){
		func(s *Spec) { s.Layout.Seed = "other" },
		func(s *Spec) { s.ModTime += 3600 },
	} {
		s := testSpec(root)
		change(&s)
		disk := filepath.Join(dir, "other.img")
		os.Remove(disk)
		if _, err := Write(t.Context(), disk, s); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if got := sha256File(t, disk); got == sums[0] {
			t.Errorf("changing the spec did not change the image (sha256 %s)", got)
		}
	}
}

func TestWriteCancelled(t *testing.T) {
	tool(t, "mke2fs", "e2fsprogs")
	root := makeSquashfs(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if _, err := Write(ctx, disk, testSpec(root)); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	if _, err := os.Stat(disk); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after cancel, stat %s = %v, want not exist", disk, err)
	}
}

// TestWrite1GiB measures Write for a 1 GiB disk with a 300 MiB root image
// and a 10 MiB kernel and 40 MiB initrd on the ESP.
func TestWrite1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 1 GiB image; skipped under -short")
	}
	tool(t, "mke2fs", "e2fsprogs")
	dir := t.TempDir()
	randomFile := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := io.CopyN(f, rand.Reader, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := randomFile("root.sqfs", 300*disklayout.MiB)
	kernel := randomFile("vmlinuz", 10*disklayout.MiB)
	initrd := randomFile("initrd.img", 40*disklayout.MiB)
	spec := Spec{
		Layout: disklayout.Layout{ESPSize: 128 * disklayout.MiB, RootSize: 384 * disklayout.MiB, DataSize: 126 * disklayout.MiB, Seed: "bench"},
		ESP: []ESPFile{
			{Path: "/EFI/BOOT/BOOTX64.EFI", Source: fstree.Bytes(make([]byte, 100000)), Size: 100000},
			{Path: "/loader/loader.conf", Source: fstree.Bytes("timeout 0\n"), Size: 10},
			{Path: "/loader/entries/plumb-1.0.0.conf", Source: fstree.Bytes(testEntry), Size: int64(len(testEntry))},
			{Path: "/plumb/a/vmlinuz", Source: fstree.HostFile(kernel), Size: 10 * disklayout.MiB},
			{Path: "/plumb/a/initrd.img", Source: fstree.HostFile(initrd), Size: 40 * disklayout.MiB},
		},
		RootA:    root,
		DataDirs: []string{"plumb/tuf"},
		ModTime:  testModTime,
	}
	if got := spec.Layout.DiskSize(); got != 1<<30 {
		t.Fatalf("DiskSize() = %d, want 1 GiB", got)
	}
	disk := filepath.Join(dir, "disk.img")
	start := time.Now()
	if _, err := Write(t.Context(), disk, spec); err != nil {
		t.Fatalf("Write: %v", err)
	}
	t.Logf("Write of a 1 GiB disk (300 MiB root, 50 MiB on the ESP) took %v", time.Since(start))
	if out := runTool(t, tool(t, "sgdisk", "gdisk"), "-v", disk); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %s", out)
	}
	runTool(t, tool(t, "fsck.vfat", "dosfstools"), "-n", extract(t, disk, spec.Layout.Partitions()[0]))
}

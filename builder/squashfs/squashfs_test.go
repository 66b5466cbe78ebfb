package squashfs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	dsquashfs "github.com/diskfs/go-diskfs/filesystem/squashfs"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/internal/fstree"
)

const testTime = 1700000000

// genSource produces size deterministic bytes: runs of text (compressible)
// and random bytes, from a seed. It never holds the content in memory.
type genSource struct {
	seed uint64
	size int64
	zero bool // all zeros
}

func (g genSource) Open() (io.ReadCloser, error) {
	if g.zero {
		return io.NopCloser(io.LimitReader(zeroReader{}, g.size)), nil
	}
	return io.NopCloser(io.LimitReader(&genReader{r: rand.New(rand.NewPCG(g.seed, 7))}, g.size)), nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type genReader struct {
	r   *rand.Rand
	buf []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	if len(g.buf) == 0 {
		if g.r.IntN(2) == 0 {
			g.buf = []byte(strings.Repeat(fmt.Sprintf("line %d of text, ", g.r.IntN(1000)), 1+g.r.IntN(200)))
		} else {
			g.buf = make([]byte, 1+g.r.IntN(3000))
			for i := range g.buf {
				g.buf[i] = byte(g.r.Uint32())
			}
		}
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

func content(t *testing.T, n *fstree.Node) []byte {
	t.Helper()
	r, err := n.Source.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r) // test data: a few hundred KiB at most
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, tr *fstree.Tree, p string, n *fstree.Node) {
	t.Helper()
	if n.ModTime == 0 {
		n.ModTime = testTime
	}
	if err := tr.Put(p, n); err != nil {
		t.Fatal(err)
	}
}

// testTree holds every node kind the writer supports.
func testTree(t *testing.T, bs int64) *fstree.Tree {
	t.Helper()
	tr := fstree.New()
	tr.Get(".").ModTime = testTime
	file := func(p string, mode fs.FileMode, src fstree.Source, size int64) *fstree.Node {
		n := &fstree.Node{Mode: mode, Source: src, Size: size}
		put(t, tr, p, n)
		return n
	}
	text := func(p, s string) *fstree.Node { return file(p, 0o644, fstree.Bytes(s), int64(len(s))) }

	text("etc/hostname", "plumb\n")
	text("etc/same1", "identical content\n")
	text("etc/same2", "identical content\n")
	file("etc/empty", 0o600, fstree.Bytes(nil), 0)
	file("bin/busybox", 0o755, genSource{seed: 1, size: 3*bs + bs/2}, 3*bs+bs/2)
	file("bin/exact", 0o755, genSource{seed: 2, size: bs}, bs)
	file("bin/twoblocks", 0o755, genSource{seed: 3, size: 2 * bs}, 2*bs)
	file("bin/twoblocks-other", 0o755, genSource{seed: 9, size: 2 * bs}, 2*bs) // same size, other bytes
	file("usr/share/busybox-copy", 0o644, genSource{seed: 1, size: 3*bs + bs/2}, 3*bs+bs/2)
	file("bin/nearly", 0o644, genSource{seed: 4, size: bs - 1}, bs-1)
	file("var/zeros", 0o644, genSource{zero: true, size: 2*bs + 100}, 2*bs+100)
	su := file("bin/su", 0o755|fs.ModeSetuid, genSource{seed: 5, size: 5000}, 5000)
	su.UID, su.GID = 0, 0
	wall := file("bin/wall", 0o755|fs.ModeSetgid, genSource{seed: 6, size: 700}, 700)
	wall.GID = 5
	ping := file("bin/ping", 0o755, genSource{seed: 7, size: 900}, 900)
	ping.Xattrs = map[string][]byte{
		"security.capability": {1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"user.comment":        []byte("needs raw sockets"),
	}
	put(t, tr, "etc/xattr-dir", &fstree.Node{Mode: fs.ModeDir | 0o755, Xattrs: map[string][]byte{"user.dir": []byte("yes")}})
	put(t, tr, "etc/xattr-link", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "hostname", Xattrs: map[string][]byte{"trusted.t": []byte("1")}})

	for _, l := range []struct{ old, new string }{
		{"bin/busybox", "bin/sh"}, {"bin/busybox", "usr/bin/ash"}, {"etc/hostname", "etc/hostname.link"},
	} {
		if err := tr.Link(l.old, l.new); err != nil {
			t.Fatal(err)
		}
	}
	put(t, tr, "bin/ls", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "busybox"})
	put(t, tr, "etc/dangling", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "/nonexistent/target"})
	put(t, tr, "dev/null", &fstree.Node{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3})
	put(t, tr, "dev/sda", &fstree.Node{Mode: fs.ModeDevice | 0o660, Major: 8, Minor: 0, GID: 6})
	put(t, tr, "dev/bigminor", &fstree.Node{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 300, Minor: 70000})
	put(t, tr, "run/fifo", &fstree.Node{Mode: fs.ModeNamedPipe | 0o620})
	put(t, tr, "run/sock", &fstree.Node{Mode: fs.ModeSocket | 0o755, UID: 107, GID: 113})
	put(t, tr, "tmp", &fstree.Node{Mode: fs.ModeDir | 0o777 | fs.ModeSticky})
	put(t, tr, "home/user", &fstree.Node{Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000, ModTime: testTime + 99})
	h := text("home/user/.profile", "export PS1='$ '\n")
	h.UID, h.GID = 1000, 1000
	n := text("home/nobody", "x")
	n.UID, n.GID = 65534, 65534
	deep := "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/" + strings.Repeat("long-name-", 25) + "x"
	text(deep, "deep\n")
	for i := range 2000 {
		p := fmt.Sprintf("many/entry-with-a-longish-name-%04d", i)
		switch i % 3 {
		case 0:
			text(p, fmt.Sprintf("file %d\n", i))
		case 1:
			put(t, tr, p, &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: fmt.Sprintf("target-%d", i)})
		default:
			put(t, tr, p, &fstree.Node{Mode: fs.ModeDir | 0o755})
		}
	}
	return tr
}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not found: apt-get install %s", name, pkg)
		}
		t.Fatalf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

func writeImage(t *testing.T, tr *fstree.Tree, opts squashfs.Options) (string, squashfs.Stats) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "root.sqfs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := squashfs.Write(t.Context(), f, tr, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != st.Bytes || st.Bytes%4096 != 0 {
		t.Fatalf("image is %d bytes, Stats.Bytes = %d, want equal and a multiple of 4096", fi.Size(), st.Bytes)
	}
	return img, st
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lsMode renders a mode as ls -l does.
func lsMode(m fs.FileMode) string {
	typ := "-"
	switch {
	case m.IsDir():
		typ = "d"
	case m&fs.ModeSymlink != 0:
		typ = "l"
	case m&fs.ModeCharDevice != 0:
		typ = "c"
	case m&fs.ModeDevice != 0:
		typ = "b"
	case m&fs.ModeNamedPipe != 0:
		typ = "p"
	case m&fs.ModeSocket != 0:
		typ = "s"
	}
	b := []byte(typ + "rwxrwxrwx")
	for i := range 9 {
		if m&(1<<(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	special := func(set bool, i int, lower, upper byte) {
		if !set {
			return
		}
		if b[i] == 'x' {
			b[i] = lower
		} else {
			b[i] = upper
		}
	}
	special(m&fs.ModeSetuid != 0, 3, 's', 'S')
	special(m&fs.ModeSetgid != 0, 6, 's', 'S')
	special(m&fs.ModeSticky != 0, 9, 't', 'T')
	return string(b)
}

var llnLine = regexp.MustCompile(`^(\S{10}) (\d+)/(\d+) +(\d+|\d+, *\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) squashfs-root(/.*)?$`)

func TestWriteReadBack(t *testing.T) {
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	for _, tc := range []struct {
		name string
		opts squashfs.Options
	}{
		{"defaults", squashfs.Options{ModTime: testTime}},
		{"4KiB-blocks-level3", squashfs.Options{BlockSize: 4096, Level: 3, Workers: 3, ModTime: testTime}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := int64(tc.opts.BlockSize)
			if bs == 0 {
				bs = 128 << 10
			}
			tr := testTree(t, bs)
			img, st := writeImage(t, tr, tc.opts)

			// Superblock facts.
			level := tc.opts.Level
			if level == 0 {
				level = 15
			}
			s := run(t, unsquashfs, "-s", img)
			for _, want := range []string{
				"Compression zstd", fmt.Sprintf("compression-level %d", level),
				fmt.Sprintf("Block size %d", bs), fmt.Sprintf("Number of inodes %d", st.Inodes),
				"Number of xattr ids 3",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("unsquashfs -s lacks %q:\n%s", want, s)
				}
			}
			if st.Inodes != tr.Len()-3 { // three hard links
				t.Errorf("Stats.Inodes = %d, want %d", st.Inodes, tr.Len()-3)
			}

			checkListing(t, tr, run(t, unsquashfs, "-lln", img))
			if os.Geteuid() == 0 {
				dir := filepath.Join(t.TempDir(), "x")
				run(t, unsquashfs, "-d", dir, img)
				checkExtracted(t, tr, dir)
			} else {
				t.Log("not root: skipping the extraction check (needs to create devices)")
			}
			checkDiskfs(t, tr, img)
		})
	}
}

// checkListing compares unsquashfs -lln output with the tree.
func checkListing(t *testing.T, tr *fstree.Tree, out string) {
	t.Helper()
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := llnLine.FindStringSubmatch(sc.Text())
		if m == nil {
			if strings.Contains(sc.Text(), "squashfs-root") {
				t.Errorf("unsquashfs -lln: unexpected line %q", sc.Text())
			}
			continue
		}
		p := strings.TrimPrefix(m[6], "/")
		if p == "" {
			p = "."
		}
		size := strings.Join(strings.Fields(strings.ReplaceAll(m[4], ",", ", ")), " ")
		got[p] = fmt.Sprintf("%s %s/%s %s %s", m[1], m[2], m[3], size, m[5])
	}
	n := 0
	err := tr.Walk(func(p string, nd *fstree.Node) error {
		n++
		name, size := p, ""
		switch {
		case nd.IsSymlink():
			name = p + " -> " + nd.Target
			size = strconv.Itoa(len(nd.Target))
		case nd.Mode&fs.ModeDevice != 0:
			// unsquashfs -lln prints the encoded number split at bit 8
			// (it decodes only small minors); extraction and the mount
			// test check the real numbers.
			rdev := nd.Minor&0xff | nd.Major<<8 | (nd.Minor&^0xff)<<12
			size = fmt.Sprintf("%d, %d", rdev>>8, rdev&0xff)
		case nd.IsRegular():
			size = strconv.FormatInt(nd.Size, 10)
		case nd.IsDir():
			size = "" // directory sizes are the listing's, not checked
		default:
			size = "0"
		}
		want := fmt.Sprintf("%s %d/%d %s %s", lsMode(nd.Mode), nd.UID, nd.GID, size,
			time.Unix(nd.ModTime, 0).UTC().Format("2006-01-02 15:04"))
		g := got[name]
		if nd.IsDir() {
			f := strings.Fields(g)
			if len(f) == 5 {
				g = strings.Join(append(f[:2:2], "", f[3], f[4]), " ")
			}
		}
		if g != want {
			t.Errorf("unsquashfs -lln %s = %q, want %q", name, g, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("unsquashfs -lln listed %d paths, tree has %d", len(got), n)
	}
}

// checkExtracted compares an unsquashfs extraction with the tree.
func checkExtracted(t *testing.T, tr *fstree.Tree, dir string) {
	t.Helper()
	inodes := map[*fstree.Node]uint64{}
	err := tr.Walk(func(p string, nd *fstree.Node) error {
		hp := filepath.Join(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(hp, &st); err != nil {
			t.Errorf("lstat %s: %v", p, err)
			return nil
		}
		if got, want := st.Mode&0o7777, uint32(nd.Mode.Perm()); got&0o777 != want {
			t.Errorf("%s: permissions %o, want %o", p, got, want)
		}
		for _, sp := range []struct {
			bit  fs.FileMode
			unix uint32
		}{{fs.ModeSetuid, unix.S_ISUID}, {fs.ModeSetgid, unix.S_ISGID}, {fs.ModeSticky, unix.S_ISVTX}} {
			if (nd.Mode&sp.bit != 0) != (st.Mode&sp.unix != 0) && !nd.IsSymlink() {
				t.Errorf("%s: mode %o, want special bit %v", p, st.Mode, sp.bit)
			}
		}
		if st.Uid != nd.UID || st.Gid != nd.GID {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, nd.UID, nd.GID)
		}
		if !nd.IsSymlink() && st.Mtim.Sec != nd.ModTime {
			t.Errorf("%s: mtime %d, want %d", p, st.Mtim.Sec, nd.ModTime)
		}
		switch {
		case nd.IsDir():
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				t.Errorf("%s: not a directory", p)
			}
		case nd.IsRegular():
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				t.Errorf("%s: not a regular file", p)
				return nil
			}
			if ino, ok := inodes[nd]; ok && ino != st.Ino {
				t.Errorf("%s: inode %d, want %d (hard link)", p, st.Ino, ino)
			}
			inodes[nd] = st.Ino
			if st.Size != nd.Size {
				t.Errorf("%s: size %d, want %d", p, st.Size, nd.Size)
			}
			got, err := os.ReadFile(hp)
			if err != nil {
				t.Error(err)
			} else if want := content(t, nd); !bytes.Equal(got, want) {
				t.Errorf("%s: content differs (sha256 %x, want %x)", p, sha256.Sum256(got), sha256.Sum256(want))
			}
		case nd.IsSymlink():
			if got, err := os.Readlink(hp); err != nil || got != nd.Target {
				t.Errorf("readlink %s = %q, %v; want %q", p, got, err, nd.Target)
			}
		case nd.Mode&fs.ModeDevice != 0:
			want := uint32(unix.S_IFBLK)
			if nd.Mode&fs.ModeCharDevice != 0 {
				want = unix.S_IFCHR
			}
			if st.Mode&unix.S_IFMT != want || unix.Major(st.Rdev) != nd.Major || unix.Minor(st.Rdev) != nd.Minor {
				t.Errorf("%s: mode %o dev %d:%d, want type %o dev %d:%d", p, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), want, nd.Major, nd.Minor)
			}
		case nd.Mode&fs.ModeNamedPipe != 0:
			if st.Mode&unix.S_IFMT != unix.S_IFIFO {
				t.Errorf("%s: mode %o, want a fifo", p, st.Mode)
			}
		case nd.Mode&fs.ModeSocket != 0:
			if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
				t.Errorf("%s: mode %o, want a socket", p, st.Mode)
			}
		}
		for name, want := range nd.Xattrs {
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(hp, name, buf)
			if err != nil {
				t.Errorf("getxattr %s %s: %v", p, name, err)
			} else if !bytes.Equal(buf[:n], want) {
				t.Errorf("getxattr %s %s = %q, want %q", p, name, buf[:n], want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkDiskfs reads a few files with go-diskfs's squashfs reader.
func checkDiskfs(t *testing.T, tr *fstree.Tree, img string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	sq, err := dsquashfs.Read(file.New(f, true), fi.Size(), 0, 0)
	if err != nil {
		t.Fatalf("go-diskfs squashfs.Read: %v", err)
	}
	for _, p := range []string{"etc/hostname", "bin/busybox", "bin/exact", "bin/nearly", "var/zeros", "many/entry-with-a-longish-name-1998"} {
		got, err := sq.ReadFile(p)
		if err != nil {
			t.Errorf("go-diskfs ReadFile %s: %v", p, err)
			continue
		}
		if want := content(t, tr.Get(p)); !bytes.Equal(got, want) {
			t.Errorf("go-diskfs ReadFile %s: %d bytes differing from the %d expected", p, len(got), len(want))
		}
	}
	ents, err := sq.ReadDir("many")
	if err != nil {
		t.Fatalf("go-diskfs ReadDir /many: %v", err)
	}
	if len(ents) != 2000 {
		t.Errorf("go-diskfs ReadDir /many: %d entries, want 2000", len(ents))
	}
}

func TestDeterministic(t *testing.T) {
	for _, opts := range []squashfs.Options{
		{BlockSize: 4096, Level: 3, ModTime: testTime},
		{ModTime: testTime},
	} {
		bs := int64(opts.BlockSize)
		if bs == 0 {
			bs = 128 << 10
		}
		var imgs [][]byte
		for _, workers := range []int{1, 8} {
			opts.Workers = workers
			img, _ := writeImage(t, testTree(t, bs), opts) // a fresh tree: no state kept in nodes
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, b)
		}
		if !bytes.Equal(imgs[0], imgs[1]) {
			t.Errorf("block size %d: images differ with 1 and 8 workers (sha256 %x vs %x)", bs, sha256.Sum256(imgs[0]), sha256.Sum256(imgs[1]))
		}
	}
}

// TestLayout checks the layout promises: file data in walk order, and no
// fragment for the tail of a file of a block or more.
func TestLayout(t *testing.T) {
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	random := func(seed uint64, n int) []byte {
		r := rand.New(rand.NewPCG(seed, 1))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	const bs = 4096
	for _, tc := range []struct {
		name      string
		sizes     map[string]int
		copies    map[string]string // path -> path of the file it copies
		fragments int
	}{
		{"big files only", map[string]int{"a": bs + 100, "b/c": bs, "d": 3*bs - 1}, nil, 0},
		{"one small file", map[string]int{"a": bs + 100, "b": 10}, nil, 1},
		{"two fragment blocks", map[string]int{"a": 3000, "b": 3000, "c": 100}, nil, 2},
		{"duplicates", map[string]int{"a": 2*bs + 5, "b": 2*bs + 5, "d": 100}, map[string]string{"c": "a", "e": "d"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New()
			data := map[string][]byte{}
			seed := uint64(0)
			for p, n := range tc.sizes {
				seed++
				data[p] = random(seed, n) // incompressible: stored raw, findable in the image
				put(t, tr, p, &fstree.Node{Mode: 0o644, Size: int64(n), Source: fstree.Bytes(data[p])})
			}
			for p, orig := range tc.copies {
				data[p] = data[orig]
				put(t, tr, p, &fstree.Node{Mode: 0o644, Size: int64(len(data[p])), Source: fstree.Bytes(data[p])})
			}
			img, _ := writeImage(t, tr, squashfs.Options{BlockSize: bs, ModTime: testTime})
			if s := run(t, unsquashfs, "-s", img); !strings.Contains(s, fmt.Sprintf("Number of fragments %d\n", tc.fragments)) {
				t.Errorf("unsquashfs -s: want %d fragments:\n%s", tc.fragments, s)
			}
			if os.Geteuid() == 0 {
				dir := filepath.Join(t.TempDir(), "x")
				run(t, unsquashfs, "-d", dir, img)
				checkExtracted(t, tr, dir)
			}
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			last := -1
			err = tr.Walk(func(p string, n *fstree.Node) error {
				if !n.IsRegular() || n.Size < bs {
					return nil
				}
				if c := bytes.Count(raw, data[p]); c != 1 {
					t.Errorf("%s: content found %d times in the image, want once", p, c)
				}
				if _, ok := tc.copies[p]; ok {
					return nil
				}
				at := bytes.Index(raw, data[p])
				if at <= last {
					t.Errorf("%s: data at offset %d, want after the previous file's (%d)", p, at, last)
				}
				last = at
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// slowSource yields an endless stream, a little at a time.
type slowSource struct{}

func (slowSource) Open() (io.ReadCloser, error) { return io.NopCloser(slowReader{}), nil }

type slowReader struct{}

func (slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	n := min(len(p), 4096)
	for i := range p[:n] {
		p[i] = byte(i * 7)
	}
	return n, nil
}

func TestCancel(t *testing.T) {
	tr := fstree.New()
	put(t, tr, "huge", &fstree.Node{Mode: 0o644, Size: 1 << 40, Source: slowSource{}})
	ctx, cancel := context.WithCancel(t.Context())
	f, err := os.Create(filepath.Join(t.TempDir(), "x.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		_, err := squashfs.Write(ctx, f, tr, squashfs.Options{Workers: 2})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Write after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Write did not return within 2s of the cancel")
	}
}

// shortSource claims more bytes than it has.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts squashfs.Options
		node *fstree.Node
		want string
	}{
		{"level", squashfs.Options{Level: 23}, nil, "level: expected 1..22, got 23"},
		{"block size", squashfs.Options{BlockSize: 5000}, nil, "block size: expected a power of two"},
		{"block size too big", squashfs.Options{BlockSize: 2 << 20}, nil, "block size: expected a power of two"},
		{"file shorter", squashfs.Options{}, &fstree.Node{Mode: 0o644, Size: 10, Source: fstree.Bytes("abc")}, "bad: file is shorter"},
		{"file longer", squashfs.Options{}, &fstree.Node{Mode: 0o644, Size: 2, Source: fstree.Bytes("abc")}, "bad: file is longer"},
		{"big file shorter", squashfs.Options{BlockSize: 4096}, &fstree.Node{Mode: 0o644, Size: 10000, Source: fstree.Bytes("abc")}, "bad: file is shorter"},
		{"no source", squashfs.Options{}, &fstree.Node{Mode: 0o644, Size: 2}, "bad: regular file of 2 bytes has no source"},
		{"empty symlink", squashfs.Options{}, &fstree.Node{Mode: fs.ModeSymlink | 0o777}, "bad: symlink target: expected 1..4095 bytes, got 0"},
		{"xattr namespace", squashfs.Options{}, &fstree.Node{Mode: 0o644, Source: fstree.Bytes(nil), Xattrs: map[string][]byte{"system.posix_acl_access": {1}}}, `xattr "system.posix_acl_access": expected a name in the namespace`},
		{"device", squashfs.Options{}, &fstree.Node{Mode: fs.ModeDevice, Major: 5000}, "bad: device 5000:0: expected major < 4096"},
		{"mtime", squashfs.Options{}, &fstree.Node{Mode: 0o644, Source: fstree.Bytes(nil), ModTime: -5}, "bad: mod time: expected 0..4294967295 seconds, got -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fstree.New()
			if tc.node != nil {
				if tc.node.ModTime == 0 {
					tc.node.ModTime = testTime
				}
				if err := tr.Put("bad", tc.node); err != nil {
					t.Fatal(err)
				}
			}
			_, err := squashfs.Write(t.Context(), &seekBuffer{}, tr, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Write = %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	b   []byte
	off int
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if need := s.off + len(p); need > len(s.b) {
		s.b = append(s.b, make([]byte, need-len(s.b))...)
	}
	copy(s.b[s.off:], p)
	s.off += len(p)
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.off = int(off)
	case io.SeekCurrent:
		s.off += int(off)
	case io.SeekEnd:
		s.off = len(s.b) + int(off)
	}
	return int64(s.off), nil
}

func TestMount(t *testing.T) {
	if testing.Short() {
		t.Skip("mount test is not in the -short tier")
	}
	if os.Geteuid() != 0 {
		t.Skip("mount test needs root")
	}
	tr := testTree(t, 128<<10)
	img, _ := writeImage(t, tr, squashfs.Options{ModTime: testTime})
	mnt := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "mount", "-t", "squashfs", "-o", "loop,ro", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount -t squashfs not permitted here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	// The kernel's view must match the tree exactly as unsquashfs's does.
	checkExtracted(t, tr, mnt)
	out := run(t, "ls", "-la", filepath.Join(mnt, "bin"))
	for _, want := range []string{"-rwsr-xr-x", "busybox", "ls -> busybox"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -la bin lacks %q:\n%s", want, out)
		}
	}
	if got := run(t, "cat", filepath.Join(mnt, "etc/hostname")); got != "plumb\n" {
		t.Errorf("cat etc/hostname = %q, want %q", got, "plumb\n")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || st.Type != 0x73717368 {
		t.Errorf("statfs %s: type %#x, %v; want squashfs", mnt, st.Type, err)
	}
}

// TestHugeFile checks a file over 4 GiB (extended inode, 64-bit sizes).
// Its blocks are zeros (sparse) but for the last, so it is quick to write.
func TestHugeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("4 GiB file test is not in the -short tier")
	}
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	const size = 4<<30 + 12345
	tr := fstree.New()
	put(t, tr, "huge", &fstree.Node{Mode: 0o644, Size: size, Source: tailSource{size: size}})
	put(t, tr, "small", &fstree.Node{Mode: 0o644, Size: 3, Source: fstree.Bytes("abc")})
	img, _ := writeImage(t, tr, squashfs.Options{Level: 1})
	if out := run(t, unsquashfs, "-lln", img); !strings.Contains(out, fmt.Sprintf(" %d ", int64(size))) {
		t.Fatalf("unsquashfs -lln lacks the size %d:\n%s", int64(size), out)
	}
	got := run(t, unsquashfs, "-cat", img, "small")
	if got != "abc" {
		t.Errorf("unsquashfs -cat small = %q, want abc", got)
	}
	dir := filepath.Join(t.TempDir(), "x")
	run(t, unsquashfs, "-d", dir, img)
	f, err := os.Open(filepath.Join(dir, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tail := make([]byte, 12345)
	if _, err := f.ReadAt(tail, 4<<30); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, bytes.Repeat([]byte{'t'}, 12345)) {
		t.Errorf("the tail of the huge file differs")
	}
}

// tailSource is zeros up to 4 GiB, then 't' bytes.
type tailSource struct{ size int64 }

func (s tailSource) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(io.LimitReader(zeroReader{}, 4<<30),
		bytes.NewReader(bytes.Repeat([]byte{'t'}, int(s.size-4<<30))))), nil
}

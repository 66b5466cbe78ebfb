package rootfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/testutil"
)

// cachedTestDeb returns the .deb the lead downloaded into .cache/debs.
func cachedTestDeb(t *testing.T, glob string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(testutil.CacheDir(t), "debs", glob))
	if len(m) == 0 {
		msg := "no .cache/debs/" + glob + ": run `apt-get download` for it into .cache/debs"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return m[0]
}

// dpkgLine is one line of `dpkg-deb -c`:
// "-rwxr-xr-x root/root 1234 2024-01-02 03:04 ./usr/bin/x".
var dpkgLine = regexp.MustCompile(`^(\S{10}) (\S+)/(\S+)\s+(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) \./(.*)$`)

// checkAgainstDpkg compares the tree with `dpkg-deb -c deb`: every path,
// type and mode, owner, size, mtime (to the minute), symlink target and
// hard link, and that the tree holds nothing else.
func checkAgainstDpkg(t *testing.T, tr *fstree.Tree, deb string) {
	t.Helper()
	requireTool(t, "dpkg-deb", "dpkg")
	cmd := exec.CommandContext(t.Context(), "dpkg-deb", "-c", deb)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	lines := 0
	for sc.Scan() {
		m := dpkgLine.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("unparsed dpkg-deb line %q", sc.Text())
		}
		perm, owner, group, size, date, name := m[1], m[2], m[3], m[4], m[5], strings.TrimSuffix(m[6], "/")
		if name == "" {
			continue // "./": the tree's root keeps its own metadata
		}
		lines++
		target := ""
		hardTarget := ""
		switch perm[0] {
		case 'l':
			name, target, _ = strings.Cut(name, " -> ")
		case 'h':
			name, hardTarget, _ = strings.Cut(name, " link to ./")
		}
		seen[name] = true
		n := tr.Get(name)
		if n == nil {
			t.Errorf("%s: missing from the tree", name)
			continue
		}
		if hardTarget != "" {
			if tr.Get(hardTarget) != n {
				t.Errorf("%s: not the same node as its hard link target %s", name, hardTarget)
			}
			perm = "-" + perm[1:]
		}
		if got := lsMode(n.Mode); got != perm {
			t.Errorf("%s: mode %s, want %s", name, got, perm)
		}
		if owner != "root" || group != "root" {
			t.Fatalf("%s: owner %s/%s: test only knows root", name, owner, group)
		}
		if n.UID != 0 || n.GID != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", name, n.UID, n.GID)
		}
		if got := time.Unix(n.ModTime, 0).UTC().Format("2006-01-02 15:04"); got != date {
			t.Errorf("%s: mtime %s, want %s", name, got, date)
		}
		if n.IsRegular() && hardTarget == "" {
			if want, _ := strconv.ParseInt(size, 10, 64); n.Size != want {
				t.Errorf("%s: size %d, want %d", name, n.Size, want)
			}
		}
		if n.Target != target {
			t.Errorf("%s: symlink target %q, want %q", name, n.Target, target)
		}
	}
	if lines == 0 {
		t.Fatalf("dpkg-deb -c listed nothing")
	}
	_ = tr.Walk(func(p string, _ *fstree.Node) error {
		if p != "." && !seen[p] {
			t.Errorf("%s: in the tree but not in the package", p)
		}
		return nil
	})
}

// lsMode renders a mode the way ls and tar -tv do ("-rwsr-xr-x").
func lsMode(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m.Perm()&(1<<(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(bit fs.FileMode, pos int, set, unset byte) {
		if m&bit != 0 {
			if b[pos] == '-' {
				b[pos] = unset
			} else {
				b[pos] = set
			}
		}
	}
	special(fs.ModeSetuid, 3, 's', 'S')
	special(fs.ModeSetgid, 6, 's', 'S')
	special(fs.ModeSticky, 9, 't', 'T')
	return string(b)
}

// checkMembers compares the content of some regular files with the
// members `dpkg-deb --fsys-tarfile | tar -x` extracts.
func checkMembers(t *testing.T, tr *fstree.Tree, deb string, paths []string) {
	t.Helper()
	requireTool(t, "tar", "tar")
	dir := t.TempDir()
	args := []string{"-c", `deb=$1 dir=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$dir" "$@"`, "sh", deb, dir}
	for _, p := range paths {
		args = append(args, "./"+p)
	}
	if out, err := exec.CommandContext(t.Context(), "sh", args...).CombinedOutput(); err != nil {
		t.Fatalf("extracting with dpkg-deb: %v\n%s", err, out)
	}
	for _, p := range paths {
		n := tr.Get(p)
		if n == nil || !n.IsRegular() {
			t.Errorf("%s: not a regular file in the tree", p)
			continue
		}
		want := fileSHA256(t, fstree.HostFile(filepath.Join(dir, p)))
		if got := fileSHA256(t, n.Source); got != want {
			t.Errorf("%s: content sha256 %s, dpkg-deb's %s", p, got, want)
		}
	}
}

func fileSHA256(t *testing.T, src fstree.Source) string {
	t.Helper()
	rc, err := src.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestAddDebReal(t *testing.T) {
	tests := []struct {
		name    string
		glob    string
		heavy   bool // over 10 s on the 2-core builder: not in -short
		members []string
	}{
		{"busybox-static", "busybox-static_*.deb", false, []string{"bin/busybox", "usr/share/doc/busybox-static/copyright"}},
		{"linux-image", "linux-image-6.1.0-56-cloud-amd64_*.deb", true, []string{
			"boot/vmlinuz-6.1.0-56-cloud-amd64",
			"boot/config-6.1.0-56-cloud-amd64",
			"lib/modules/6.1.0-56-cloud-amd64/kernel/fs/squashfs/squashfs.ko",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.heavy && testing.Short() {
				t.Skip("heavy: 108 MB of xz; runs without -short")
			}
			deb := cachedTestDeb(t, tt.glob)
			tr, s := newTreeStore(t)
			start := time.Now()
			if err := AddDeb(t.Context(), tr, s, deb); err != nil {
				t.Fatalf("AddDeb: %v", err)
			}
			t.Logf("AddDeb %s: %d paths in %v", filepath.Base(deb), tr.Len(), time.Since(start))
			checkAgainstDpkg(t, tr, deb)
			checkMembers(t, tr, deb, tt.members)
		})
	}
}

// buildDeb builds a package from root with dpkg-deb, compressing its
// members with comp (dpkg-deb -Z).
func buildDeb(t *testing.T, root, comp string) string {
	t.Helper()
	requireTool(t, "dpkg-deb", "dpkg")
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := "Package: plumb-test\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Plumb <plumb@example.org>\nDescription: test package\n"
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(t.TempDir(), "plumb-test_1.0-1_all.deb")
	cmd := exec.CommandContext(t.Context(), "dpkg-deb", "--root-owner-group", "-Z"+comp, "--build", root, deb)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	return deb
}

// writeTestRoot makes a small package root: a setuid binary, a symlink, a
// hard link, a config file and a directory in bin/.
func writeTestRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "etc", "plumb"), 0o750))
	must(os.WriteFile(filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho tool\n"), 0o755))
	must(os.Chmod(filepath.Join(root, "bin", "tool"), fs.ModeSetuid|0o755))
	must(os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "tool2")))
	must(os.Symlink("tool", filepath.Join(root, "bin", "t")))
	must(os.WriteFile(filepath.Join(root, "etc", "plumb", "conf"), []byte("a=1\n"), 0o640))
	return root
}

func TestAddDebZstd(t *testing.T) {
	for _, comp := range []string{"zstd", "xz", "gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			deb := buildDeb(t, writeTestRoot(t), comp)
			requireTool(t, "ar", "binutils")
			members, err := exec.CommandContext(t.Context(), "ar", "t", deb).Output()
			if err != nil {
				t.Fatal(err)
			}
			wantMember := map[string]string{"zstd": "data.tar.zst", "xz": "data.tar.xz", "gzip": "data.tar.gz", "none": "data.tar"}[comp]
			if !strings.Contains(string(members), wantMember+"\n") {
				t.Fatalf("dpkg-deb made members %q, want %s", members, wantMember)
			}
			tr, s := newTreeStore(t)
			if err := AddDeb(t.Context(), tr, s, deb); err != nil {
				t.Fatalf("AddDeb: %v", err)
			}
			checkAgainstDpkg(t, tr, deb)
			checkMembers(t, tr, deb, []string{"bin/tool", "etc/plumb/conf"})
		})
	}
}

// TestAddDebMergedUsr installs a package with a bin/ directory onto a tree
// whose /bin is a symlink to usr/bin, and one whose directories exist with
// other metadata: dpkg keeps both.
func TestAddDebMergedUsr(t *testing.T) {
	deb := buildDeb(t, writeTestRoot(t), "zstd")
	tr, s := newTreeStore(t)
	if err := tr.Put("usr/bin", &fstree.Node{Mode: fs.ModeDir | 0o755, ModTime: 7}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("bin", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "usr/bin"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("etc", &fstree.Node{Mode: fs.ModeDir | 0o700, ModTime: 9}); err != nil {
		t.Fatal(err)
	}
	if err := AddDeb(t.Context(), tr, s, deb); err != nil {
		t.Fatalf("AddDeb: %v", err)
	}
	tests := []struct {
		path     string
		wantMode fs.FileMode
		wantTime int64 // -1: any
	}{
		{"bin", fs.ModeSymlink | 0o777, 0},
		{"usr/bin", fs.ModeDir | 0o755, 7},
		{"usr/bin/tool", fs.ModeSetuid | 0o755, -1},
		{"usr/bin/t", fs.ModeSymlink | 0o777, -1},
		{"etc", fs.ModeDir | 0o700, 9},
		{"etc/plumb", fs.ModeDir | 0o750, -1},
	}
	for _, tt := range tests {
		n := tr.Get(tt.path)
		if n == nil {
			t.Errorf("%s: missing", tt.path)
			continue
		}
		if n.Mode != tt.wantMode || (tt.wantTime >= 0 && n.ModTime != tt.wantTime) {
			t.Errorf("%s: mode %v mtime %d, want %v %d", tt.path, n.Mode, n.ModTime, tt.wantMode, tt.wantTime)
		}
	}
	if tr.Get("usr/bin/tool") != tr.Get("usr/bin/tool2") {
		t.Errorf("usr/bin/tool2 is not a hard link of usr/bin/tool")
	}
}

func TestAddDebBadInput(t *testing.T) {
	dir := t.TempDir()
	notAr := filepath.Join(dir, "x.deb")
	if err := os.WriteFile(notAr, []byte("hello, not a deb at all, just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	onlyHeader := filepath.Join(dir, "empty.deb")
	if err := os.WriteFile(onlyHeader, []byte("!<arch>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, wantErr string
	}{
		{notAr, "adding deb " + notAr + ": not a Debian package (expected an ar archive): Header doesn't look right!"},
		{onlyHeader, "adding deb " + onlyHeader + ": no data.tar member"},
		{filepath.Join(dir, "missing.deb"), "adding deb " + filepath.Join(dir, "missing.deb") + ": open " + filepath.Join(dir, "missing.deb") + ": no such file or directory"},
	}
	for _, tt := range tests {
		tr, s := newTreeStore(t)
		err := AddDeb(t.Context(), tr, s, tt.path)
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("AddDeb(%s) error = %v, want %q", filepath.Base(tt.path), err, tt.wantErr)
		}
	}
}

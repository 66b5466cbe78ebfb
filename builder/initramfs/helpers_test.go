package initramfs

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/testutil"
)

const testRelease = "6.1.0-56-cloud-amd64"

// needTool fails (or skips under -short) when a tool is missing.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		msg := fmt.Sprintf("%s not found: apt-get install %s", tool, pkg)
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return p
}

// debPath returns the cached .deb matching pattern in .cache/debs.
func debPath(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(testutil.CacheDir(t), "debs", pattern))
	if len(m) == 0 {
		msg := fmt.Sprintf("no %s in .cache/debs: download it with apt-get download (make deps)", pattern)
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return m[len(m)-1]
}

var (
	kernelOnce sync.Once
	kernelDir  string
	kernelErr  error
	tempDirs   []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// extractedDeb unpacks a .deb with dpkg-deb -x into a fresh directory that
// TestMain removes.
func extractedDeb(deb string) (string, error) {
	dir, err := os.MkdirTemp("", "initramfs-test-deb-*")
	if err != nil {
		return "", err
	}
	tempDirs = append(tempDirs, dir)
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	return dir, nil
}

// kernel returns the directory of the unpacked Debian cloud kernel package,
// shared by the tests of this package.
func kernel(t *testing.T) string {
	t.Helper()
	needTool(t, "dpkg-deb", "dpkg")
	deb := debPath(t, "linux-image-"+testRelease+"_*.deb")
	kernelOnce.Do(func() { kernelDir, kernelErr = extractedDeb(deb) })
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	return kernelDir
}

// treeFromDir builds an fstree from a host directory with lstat.
func treeFromDir(t *testing.T, root string) *fstree.Tree {
	t.Helper()
	tree := fstree.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := &fstree.Node{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, ModTime: fi.ModTime().Unix()}
		switch {
		case fi.Mode().IsRegular():
			n.Size, n.Source = fi.Size(), fstree.HostFile(p)
		case fi.Mode()&fs.ModeSymlink != 0:
			if n.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeDevice != 0:
			n.Major, n.Minor = uint32(st.Rdev>>8&0xfff), uint32(st.Rdev&0xff|st.Rdev>>12&0xfff00)
		}
		return tree.Put(filepath.ToSlash(rel), n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// baseNames maps module paths to their names ("a/b/fat.ko" -> "fat").
func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = moduleNameOf(p)
	}
	return out
}

// fakeInit writes a small file standing in for the plumb-init binary.
func fakeInit(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plumb-init")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho not really init\n"+strings.Repeat("x", 5000)), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

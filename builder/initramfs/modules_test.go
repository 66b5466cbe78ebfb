package initramfs

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/ulikunitz/xz"
)

var (
	kernelTreeOnce sync.Once
	kernelTreeVal  *fstree.Tree
)

func kernelTree(t *testing.T) *fstree.Tree {
	t.Helper()
	dir := kernel(t)
	kernelTreeOnce.Do(func() { kernelTreeVal = treeFromDir(t, dir) })
	return kernelTreeVal
}

func TestResolveModules(t *testing.T) {
	tree := kernelTree(t)
	tests := []struct {
		names []string
		want  []string // module names in load order
	}{
		// Dependencies come in .modinfo's order: virtio_net has
		// depends=virtio_ring,virtio,net_failover.
		{[]string{"virtio_net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}},
		{[]string{"squashfs"}, []string{"squashfs"}},
		{[]string{"vfat"}, []string{"fat", "vfat"}},
		{[]string{"overlay"}, []string{"overlay"}},
		// '-' and '_' name the same module; repeats are loaded once.
		{[]string{"virtio-blk", "virtio_blk"}, []string{"virtio_ring", "virtio", "virtio_blk"}},
		// built in (modules.builtin): nothing to load.
		{[]string{"ext4"}, nil},
		{[]string{"virtio_pci", "virtio_blk", "squashfs"}, []string{"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci", "virtio_blk", "squashfs"}},
	}
	for _, tt := range tests {
		paths, err := ResolveModules(tree, testRelease, tt.names)
		if err != nil {
			t.Errorf("ResolveModules(%q) error: %v", tt.names, err)
			continue
		}
		if got := baseNames(paths); !slices.Equal(got, tt.want) {
			t.Errorf("ResolveModules(%q) = %q, want %q", tt.names, got, tt.want)
		}
		for _, p := range paths {
			if !strings.HasPrefix(p, "lib/modules/"+testRelease+"/kernel/") || tree.Get(p) == nil {
				t.Errorf("ResolveModules(%q): path %q is not a module file in the tree", tt.names, p)
			}
		}
	}
}

// TestResolveModulesDependenciesFirst checks the load-order invariant for a
// larger set against the .modinfo of every module returned.
func TestResolveModulesDependenciesFirst(t *testing.T) {
	tree := kernelTree(t)
	names := []string{"virtio_net", "virtio_blk", "virtio_pci", "squashfs", "overlay", "vfat", "dm_verity", "nls_cp437", "nls_ascii"}
	paths, err := ResolveModules(tree, testRelease, names)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ResolveModules(tree, testRelease, names)
	if err != nil || !slices.Equal(paths, again) {
		t.Fatalf("second ResolveModules = %q, %v; want the same %q", again, err, paths)
	}
	pos := map[string]int{}
	for i, p := range paths {
		pos[moduleNameOf(p)] = i
	}
	for _, n := range names {
		if _, ok := pos[n]; !ok {
			t.Errorf("module %s missing from %q", n, baseNames(paths))
		}
	}
	for i, p := range paths {
		mi, err := readModinfo(tree.Get(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range mi.depends() {
			j, ok := pos[d]
			if !ok || j >= i {
				t.Errorf("%s depends on %s, which is at position %d (ok=%v), want before %d", moduleNameOf(p), d, j, ok, i)
			}
		}
	}
	t.Logf("%d modules: %s", len(paths), strings.Join(baseNames(paths), " "))
}

func TestResolveModulesErrors(t *testing.T) {
	tree := kernelTree(t)
	tests := []struct {
		tree    *fstree.Tree
		release string
		names   []string
		want    []string // substrings of the error
	}{
		{tree, testRelease, []string{"squashfs", "no_such_module"}, []string{`"no_such_module"`, testRelease}},
		{tree, "5.10.0-99-amd64", []string{"squashfs"}, []string{"5.10.0-99-amd64", "lib/modules/5.10.0-99-amd64"}},
		{tree, "", []string{"squashfs"}, []string{"kernel release", `got ""`}},
		{tree, testRelease, []string{""}, []string{"empty module name"}},
		{nil, testRelease, []string{"squashfs"}, []string{"kernel tree is nil"}},
	}
	for _, tt := range tests {
		_, err := ResolveModules(tt.tree, tt.release, tt.names)
		if err == nil {
			t.Errorf("ResolveModules(%q, %q) succeeded, want an error", tt.release, tt.names)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ResolveModules(%q, %q) error %q, want it to contain %q", tt.release, tt.names, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q has more than one line", err)
		}
	}
}

// compressedKernelTree copies fat.ko as fat.ko.xz and vfat.ko as
// vfat.ko.zst into a small tree, as kernels built with module compression
// ship them.
func compressedKernelTree(t *testing.T) (tree *fstree.Tree, fat, vfat string) {
	t.Helper()
	src := filepath.Join(kernel(t), "lib/modules", testRelease, "kernel/fs/fat")
	dir := t.TempDir()
	mdir := filepath.Join(dir, "lib/modules", testRelease, "kernel/fs/fat")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		t.Fatal(err)
	}
	compress := func(name, ext string) string {
		in, err := os.Open(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(mdir, name+ext))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		var w io.WriteCloser
		if ext == ".xz" {
			w, err = xz.NewWriter(out)
		} else {
			w, err = zstd.NewWriter(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, in); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(src, name)
	}
	fat = compress("fat.ko", ".xz")
	vfat = compress("vfat.ko", ".zst")
	return treeFromDir(t, dir), fat, vfat
}

func TestResolveModulesCompressed(t *testing.T) {
	tree, _, _ := compressedKernelTree(t)
	paths, err := ResolveModules(tree, testRelease, []string{"vfat"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lib/modules/" + testRelease + "/kernel/fs/fat/fat.ko.xz",
		"lib/modules/" + testRelease + "/kernel/fs/fat/vfat.ko.zst",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("ResolveModules(vfat) = %q, want %q", paths, want)
	}
}

func TestModuleNameOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kernel/fs/fat/vfat.ko", "vfat"},
		{"virtio-blk.ko.xz", "virtio_blk"},
		{"a/b/dm-verity.ko.zst", "dm_verity"},
		{"modules.builtin", ""},
		{".ko", ""},
		{"foo.ko.gz", ""},
	}
	for _, tt := range tests {
		if got := moduleNameOf(tt.in); got != tt.want {
			t.Errorf("moduleNameOf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

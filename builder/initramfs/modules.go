package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/ulikunitz/xz"
)

// moduleExts are the file name endings of loadable modules, longest first so
// that "x.ko.xz" is not taken for "x.ko".
var moduleExts = []string{".ko.zst", ".ko.xz", ".ko"}

// ModuleName normalises a module name: "virtio-blk" and "virtio_blk" are the
// same module to the kernel.
func ModuleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleNameOf returns the module name of a file name ("virtio_blk.ko.xz" ->
// "virtio_blk"), or "" if the name is not a module.
func moduleNameOf(file string) string {
	base := path.Base(file)
	for _, ext := range moduleExts {
		if strings.HasSuffix(base, ext) && len(base) > len(ext) {
			return ModuleName(strings.TrimSuffix(base, ext))
		}
	}
	return ""
}

// modulesDir is the tree path of a kernel release's module directory.
func modulesDir(release string) string { return "lib/modules/" + release }

// findModulesDir returns the directory of a release's modules in tree:
// lib/modules/<release>, or usr/lib/modules/<release> in a merged-/usr root
// where lib is a symlink.
func findModulesDir(tree *fstree.Tree, release string) (string, bool) {
	for _, d := range []string{modulesDir(release), "usr/" + modulesDir(release)} {
		if n := tree.Get(d); n != nil && n.IsDir() {
			return d, true
		}
	}
	return "", false
}

// moduleIndex maps module names to their tree paths for one kernel release,
// and knows which names are built into the kernel.
type moduleIndex struct {
	release string
	dir     string // tree path of the module directory
	paths   map[string]string
	builtin map[string]bool
}

func indexModules(tree *fstree.Tree, release string) (*moduleIndex, error) {
	if tree == nil {
		return nil, fmt.Errorf("kernel tree is nil")
	}
	if release == "" || strings.Contains(release, "/") {
		return nil, fmt.Errorf("kernel release: expected a name like \"6.1.0-56-cloud-amd64\", got %q", release)
	}
	dir, ok := findModulesDir(tree, release)
	if !ok {
		return nil, fmt.Errorf("kernel release %s: no directory /%s (or /usr/%s) in the kernel tree", release, modulesDir(release), modulesDir(release))
	}
	idx := &moduleIndex{release: release, dir: dir, paths: map[string]string{}, builtin: map[string]bool{}}
	var walk func(p string) error
	walk = func(p string) error {
		for _, name := range tree.Children(p) {
			child := p + "/" + name
			n := tree.Get(child)
			switch {
			case n.IsDir():
				if err := walk(child); err != nil {
					return err
				}
			case n.IsRegular():
				mod := moduleNameOf(name)
				if mod == "" {
					continue
				}
				if prev, ok := idx.paths[mod]; ok && prev != child {
					return fmt.Errorf("kernel release %s: module %s found twice: /%s and /%s", release, mod, prev, child)
				}
				idx.paths[mod] = child
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, err
	}
	// modules.builtin lists one "kernel/fs/ext4/ext4.ko" per line.
	if n := tree.Get(dir + "/modules.builtin"); n != nil && n.IsRegular() && n.Source != nil {
		rc, err := n.Source.Open()
		if err != nil {
			return nil, fmt.Errorf("reading /%s/modules.builtin: %w", dir, err)
		}
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			if mod := moduleNameOf(strings.TrimSpace(sc.Text())); mod != "" {
				idx.builtin[mod] = true
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading /%s/modules.builtin: %w", dir, err)
		}
	}
	return idx, nil
}

// ResolveModules resolves the named modules (e.g. "virtio_blk", "squashfs")
// plus all their dependencies from a kernel's module tree (the paths below
// lib/modules/<kernelRelease>/, or usr/lib/modules/<kernelRelease>/ in a
// merged-/usr tree), and returns their tree paths in load order:
// dependencies first, otherwise in the order of names, each module once.
// The result depends only on the tree and names.
//
// Dependencies come from the "depends=" field of each module's ELF .modinfo
// section (Debian's kernel package ships no modules.dep). Names listed in
// modules.builtin are built into the kernel and are skipped. A name that is
// neither a module nor built in is an error naming it and the release.
func ResolveModules(kernelTree *fstree.Tree, kernelRelease string, names []string) ([]string, error) {
	idx, err := indexModules(kernelTree, kernelRelease)
	if err != nil {
		return nil, err
	}
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kernel %s: module dependency cycle: %s -> %s", kernelRelease, strings.Join(chain, " -> "), name)
		}
		p, ok := idx.paths[name]
		if !ok {
			if idx.builtin[name] {
				state[name] = done
				return nil
			}
			if len(chain) > 0 {
				return fmt.Errorf("kernel %s: module %s (needed by %s) not found under /%s", kernelRelease, name, chain[len(chain)-1], idx.dir)
			}
			return fmt.Errorf("kernel %s: unknown module %q: no %s.ko under /%s and not built in", kernelRelease, name, name, idx.dir)
		}
		state[name] = visiting
		info, err := readModinfo(kernelTree.Get(p))
		if err != nil {
			return fmt.Errorf("kernel %s: module /%s: %w", kernelRelease, p, err)
		}
		if got := info.name(); got != "" && ModuleName(got) != name {
			return fmt.Errorf("kernel %s: module /%s: .modinfo says name=%s, expected %s", kernelRelease, p, got, name)
		}
		for _, dep := range info.depends() {
			if err := visit(dep, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		name := ModuleName(strings.TrimSpace(n))
		if name == "" {
			return nil, fmt.Errorf("kernel %s: empty module name in %q", kernelRelease, names)
		}
		if err := visit(name, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modinfo is the parsed .modinfo section: key=value strings.
type modinfo map[string][]string

func (m modinfo) name() string {
	if v := m["name"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// depends returns the module names this module needs, normalised, in the
// order given (the kernel's own order is deterministic).
func (m modinfo) depends() []string {
	var out []string
	for _, v := range m["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				out = append(out, ModuleName(d))
			}
		}
	}
	return out
}

// readModinfo reads the .modinfo section of a module file in the tree,
// decompressing it first if it is .ko.xz or .ko.zst.
func readModinfo(n *fstree.Node) (modinfo, error) {
	f, cleanup, err := openModule(n, "")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("reading ELF: %w", err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section: not a kernel module")
	}
	// .modinfo is a few KB of strings; the module itself is never held in memory.
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	m := modinfo{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			m[k] = append(m[k], v)
		}
	}
	return m, nil
}

// openModule returns the uncompressed module bytes of n. A plain .ko whose
// source is a host file is read in place; anything else (compressed, or
// content held elsewhere) is streamed into a temporary file in tmpDir ("" for
// the system default), which cleanup removes.
func openModule(n *fstree.Node, tmpDir string) (f *os.File, cleanup func(), err error) {
	if n == nil || !n.IsRegular() || n.Source == nil {
		return nil, nil, fmt.Errorf("not a regular file with content")
	}
	rc, err := n.Source.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("opening: %w", err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	magic, _ := br.Peek(6)
	var r io.Reader = br
	compressed := false
	switch {
	case bytes.HasPrefix(magic, []byte("\xfd7zXZ\x00")):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("reading xz: %w", err)
		}
		r, compressed = xr, true
	case bytes.HasPrefix(magic, []byte("\x28\xb5\x2f\xfd")):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd: %w", err)
		}
		defer zr.Close()
		r, compressed = zr, true
	}
	if hf, ok := rc.(*os.File); ok && !compressed {
		// Reopen so the caller owns a fresh handle at offset 0.
		g, err := os.Open(hf.Name())
		if err != nil {
			return nil, nil, fmt.Errorf("opening: %w", err)
		}
		return g, func() { g.Close() }, nil
	}
	tmp, err := os.CreateTemp(tmpDir, "module-*.ko")
	if err != nil {
		return nil, nil, fmt.Errorf("decompressing: %w", err)
	}
	cleanup = func() { tmp.Close(); os.Remove(tmp.Name()) }
	if _, err := io.Copy(tmp, r); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("decompressing: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("decompressing: %w", err)
	}
	return tmp, cleanup, nil
}

// Package rootfs owns the sources of a root filesystem: it fetches Debian
// packages and applies packages, tar archives, OCI images and host
// directories, in the recipe's order, onto one fstree.Tree.
//
// Call order: fstree.New and fstree.NewStore once, then AddDeb (after
// Fetcher.Fetch), AddTar, AddOCI or AddDir for each source; a later source
// overrides what an earlier one put at the same path. Bytes that arrive as
// streams (package and archive members, image layers) go into the Store;
// AddDir refers to host files in place.
//
// Paths inside a source never leave the tree: an entry with a ".." component
// is refused, and a symlink met on the way to an entry is resolved inside the
// tree the way the kernel resolves it inside a chroot (absolute targets start
// at the tree's root, ".." stops there); nothing is ever resolved on the host.
//
// The functions change the tree in place; after an error the tree is partly
// updated and should be discarded. Not safe for concurrent use on one tree.
package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"strings"

	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/fstree"
)

// maxSymlinks bounds the symlinks followed while resolving one path, like
// the kernel's ELOOP limit.
const maxSymlinks = 40

// OCI whiteout markers (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// applyOpts selects the semantics of the source being applied.
type applyOpts struct {
	// whiteouts makes ".wh.NAME" delete NAME and ".wh..wh..opq" hide a
	// directory's earlier contents (OCI layers).
	whiteouts bool
	// keepDirLinks keeps an existing symlink that resolves to a directory
	// when the source has a directory at that path, instead of replacing
	// the link (dpkg's behaviour; keeps /bin -> usr/bin of a merged-/usr
	// base intact).
	keepDirLinks bool
	// keepDirMeta leaves an existing directory's metadata alone when the
	// source has the same directory (dpkg: the first package wins).
	keepDirMeta bool
}

// applier puts the entries of one source into a tree.
type applier struct {
	t    *fstree.Tree
	s    *fstree.Store
	dest string // resolved tree path the source is rooted at
	opts applyOpts
	// added holds the paths this source (layer) wrote, and their
	// ancestors; whiteouts only hide what is not in it.
	added map[string]struct{}
}

func newApplier(t *fstree.Tree, s *fstree.Store, dest string, opts applyOpts) (*applier, error) {
	if t == nil {
		return nil, errors.New("nil tree")
	}
	c, err := fstree.Clean(dest)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	d, err := resolveDir(t, c)
	if err != nil {
		return nil, fmt.Errorf("destination %q: %w", dest, err)
	}
	return &applier{t: t, s: s, dest: d, opts: opts, added: map[string]struct{}{}}, nil
}

// resolve maps a source path ("./usr/bin/sh") to the tree path it lands on:
// the path under dest with every parent component's symlinks resolved in
// the tree. The last component is not followed.
func (a *applier) resolve(name string) (string, error) {
	c, err := fstree.Clean(name)
	if errors.Is(err, fstree.ErrEscapes) {
		return "", fstree.ErrEscapes // the caller names the entry
	}
	if err != nil {
		return "", err
	}
	full := join(a.dest, c)
	if full == "." {
		return ".", nil
	}
	dir, err := resolveDir(a.t, path.Dir(full))
	if err != nil {
		return "", err
	}
	return join(dir, path.Base(full)), nil
}

// resolveDir returns the tree path dir names after following the tree's
// symlinks in every component. Missing components are taken as they are
// (they will be created as directories).
func resolveDir(t *fstree.Tree, dir string) (string, error) {
	cur := "."
	todo := strings.Split(dir, "/")
	links := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur) // stops at the root: path.Dir(".") == "."
			continue
		}
		next := join(cur, comp)
		n := t.Get(next)
		switch {
		case n == nil || n.IsDir():
			cur = next
		case n.IsSymlink():
			links++
			if links > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", dir)
			}
			if strings.HasPrefix(n.Target, "/") {
				cur = "."
			}
			todo = append(strings.Split(n.Target, "/"), todo...)
		default:
			return "", fmt.Errorf("%s: %s is not a directory", dir, next)
		}
	}
	return cur, nil
}

func join(dir, name string) string {
	switch {
	case name == "." || name == "":
		return dir
	case dir == ".":
		return name
	}
	return dir + "/" + name
}

// mark records p and its ancestors as written by this source.
func (a *applier) mark(p string) {
	for p != "." {
		if _, ok := a.added[p]; ok {
			return
		}
		a.added[p] = struct{}{}
		p = path.Dir(p)
	}
}

// put places n at the source path name, following the directory rules of
// a's options.
func (a *applier) put(name string, n *fstree.Node) error {
	p, err := a.resolve(name)
	if err != nil {
		return err
	}
	if old := a.t.Get(p); old != nil && n.IsDir() {
		if old.IsDir() && a.opts.keepDirMeta {
			a.mark(p)
			return nil
		}
		if old.IsSymlink() && a.opts.keepDirLinks {
			if rd, err := resolveDir(a.t, p); err == nil {
				if target := a.t.Get(rd); target != nil && target.IsDir() {
					a.mark(p)
					return nil
				}
			}
		}
	}
	if err := a.t.Put(p, n); err != nil {
		return err
	}
	a.mark(p)
	return nil
}

// link makes the source path name a hard link to the source path old.
func (a *applier) link(old, name string) error {
	op, err := a.resolve(old)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", old, err)
	}
	np, err := a.resolve(name)
	if err != nil {
		return err
	}
	if err := a.t.Link(op, np); err != nil {
		return err
	}
	a.mark(np)
	return nil
}

// whiteout applies an OCI whiteout entry; base is its file name.
func (a *applier) whiteout(name, base string) error {
	p, err := a.resolve(name)
	if err != nil {
		return err
	}
	dir := path.Dir(p)
	if base == whiteoutOpaque {
		a.prune(dir)
		return nil
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("invalid whiteout name %q", base)
	}
	target := join(dir, victim)
	if _, ok := a.added[target]; ok {
		return nil // whiteouts hide lower layers only
	}
	a.t.Remove(target)
	return nil
}

// prune removes everything below dir that this layer did not write.
func (a *applier) prune(dir string) {
	if n := a.t.Get(dir); n == nil || !n.IsDir() {
		return
	}
	for _, name := range a.t.Children(dir) {
		c := join(dir, name)
		if _, ok := a.added[c]; !ok {
			a.t.Remove(c)
			continue
		}
		a.prune(c)
	}
}

// applyTar applies every member of the plain tar stream r.
func (a *applier) applyTar(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := a.applyEntry(hdr, tr); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	}
}

func (a *applier) applyEntry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if a.opts.whiteouts {
		base := path.Base(strings.TrimSuffix(hdr.Name, "/"))
		if strings.HasPrefix(base, whiteoutPrefix) {
			return a.whiteout(hdr.Name, base)
		}
	}
	if hdr.Typeflag == tar.TypeLink {
		return a.link(hdr.Linkname, hdr.Name)
	}
	n, err := nodeFromHeader(hdr)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		if a.s == nil {
			return errors.New("nil blob store")
		}
		src, size, err := a.s.Put(r)
		if err != nil {
			return err
		}
		if size != hdr.Size {
			return fmt.Errorf("read %d bytes, header says %d", size, hdr.Size)
		}
		n.Mode &^= fs.ModeType
		n.Source, n.Size = src, size
	case tar.TypeSymlink:
		n.Target = hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		n.Major, n.Minor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	case tar.TypeDir, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return a.put(hdr.Name, n)
}

// nodeFromHeader converts the metadata a tar header carries.
func nodeFromHeader(hdr *tar.Header) (*fstree.Node, error) {
	if hdr.Uid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid < 0 || hdr.Gid > math.MaxUint32 {
		return nil, fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	n := &fstree.Node{
		Mode:    hdr.FileInfo().Mode(), // type bits, permissions, setuid/setgid/sticky
		UID:     uint32(hdr.Uid),
		GID:     uint32(hdr.Gid),
		ModTime: hdr.ModTime.Unix(),
	}
	const xattrPrefix = "SCHILY.xattr."
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok && name != "" {
			if n.Xattrs == nil {
				n.Xattrs = map[string][]byte{}
			}
			n.Xattrs[name] = []byte(v)
		}
	}
	return n, nil
}

package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/internal/fstree"
)

// AddDir copies the host directory hostDir into t under dest, without
// following symlinks: each entry keeps its type, mode (setuid, setgid and
// sticky included), owner, mtime, symlink target, device numbers and
// extended attributes (where the host filesystem has them), and entries
// sharing an inode on the host share one *fstree.Node. Regular files are
// referenced as fstree.HostFile, not copied: they must stay in place until
// the image is written. dest itself is created (0755, root) if missing and
// otherwise keeps its metadata; an existing symlink to a directory in t is
// followed, not replaced, like rsync --keep-dirlinks.
func AddDir(t *fstree.Tree, hostDir, dest string) error {
	if err := addDir(t, hostDir, dest); err != nil {
		return fmt.Errorf("adding directory %s: %w", hostDir, err)
	}
	return nil
}

type inode struct{ dev, ino uint64 }

func addDir(t *fstree.Tree, hostDir, dest string) error {
	root, err := filepath.Abs(hostDir)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	a, err := newApplier(t, nil, dest, applyOpts{keepDirLinks: true})
	if err != nil {
		return err
	}
	if err := t.MkdirAll(a.dest, fi.ModTime().Unix()); err != nil {
		return err
	}
	links := map[inode]*fstree.Node{}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info() // lstat
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		key := inode{dev: uint64(st.Dev), ino: st.Ino}
		hardLinked := !fi.IsDir() && st.Nlink > 1
		if n := links[key]; hardLinked && n != nil {
			if err := a.put(rel, n); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			return nil
		}
		n := &fstree.Node{
			Mode:    fi.Mode(),
			UID:     st.Uid,
			GID:     st.Gid,
			ModTime: st.Mtim.Sec,
		}
		switch {
		case fi.Mode().IsRegular():
			n.Source, n.Size = fstree.HostFile(p), fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			if n.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeDevice != 0:
			rdev := uint64(st.Rdev)
			n.Major, n.Minor = unix.Major(rdev), unix.Minor(rdev)
		}
		if n.Xattrs, err = readXattrs(p); err != nil {
			return err
		}
		if err := a.put(rel, n); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if hardLinked {
			links[key] = n
		}
		return nil
	})
}

// readXattrs returns p's extended attributes (not following a symlink), or
// nil where the filesystem has none or does not support them.
func readXattrs(p string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var xattrs map[string][]byte
	for _, name := range splitNul(buf[:size]) {
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		val := make([]byte, vsize)
		vsize, err = unix.Lgetxattr(p, name, val)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		if xattrs == nil {
			xattrs = map[string][]byte{}
		}
		xattrs[name] = val[:vsize]
	}
	return xattrs, nil
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

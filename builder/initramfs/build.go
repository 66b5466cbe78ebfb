// Package initramfs builds the initramfs that boots a Plumb slot: a cpio
// (newc) archive, zstd-compressed by default, holding the early init
// (cmd/plumb-init) as /init, the kernel modules it needs to reach the root
// filesystem, and their load order.
//
// ResolveModules turns module names into module files in dependency order;
// Build writes the archive. The archive is reproducible: the same inputs give
// the same bytes (entries in bytewise path order, one fixed mtime, inode
// numbers assigned in that order).
//
// Layout of the archive:
//
//	/init                              the early init binary (0755)
//	/dev/console                       char device 5:1, for the kernel's first console
//	/dev /proc /sys /run /newroot      empty mount points
//	/lib/modules/<release>/kernel/...  the modules, uncompressed .ko
//	/lib/modules/load-order            their absolute paths, one a line, dependencies first
package initramfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/fstree"
)

// loadOrderPath is where the archive lists the modules to load, in the
// format updater/earlyinit reads.
var loadOrderPath = strings.TrimPrefix(bootrecord.LoadOrderPath, "/")

// Compression selects how Build compresses the cpio archive.
type Compression int

const (
	// Zstd compresses with zstd, which Debian's kernels (CONFIG_RD_ZSTD=y)
	// unpack fastest for their size. The zero value.
	Zstd Compression = iota
	// None writes the bare cpio archive.
	None
)

// Options are Build's inputs.
type Options struct {
	// Init is the host path of the early init binary, stored as /init.
	Init string
	// KernelTree holds the kernel's module tree (lib/modules/<release>/...);
	// it may be nil when Modules is empty.
	KernelTree *fstree.Tree
	// KernelRelease names the directory below lib/modules ("6.1.0-56-cloud-amd64").
	KernelRelease string
	// Modules are the module names to carry; their dependencies are added.
	Modules []string
	// ModTime is every entry's mtime, seconds since the Unix epoch.
	ModTime int64
	// Extra holds optional additional files; they keep their owners and modes
	// and must not collide with the paths Build writes itself.
	Extra *fstree.Tree
	// Compression of the archive; Zstd when zero.
	Compression Compression
	// TempDir holds decompressed modules while Build runs; "" means the
	// system default.
	TempDir string
	// Log receives progress; nil discards.
	Log *slog.Logger
}

// Build writes the initramfs described by opts to w.
func Build(ctx context.Context, w io.Writer, opts Options) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Init == "" {
		return fmt.Errorf("initramfs: Init: expected the host path of the plumb-init binary, got \"\"")
	}
	st, err := os.Stat(opts.Init)
	if err != nil {
		return fmt.Errorf("initramfs: init binary: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: init binary %s: expected a regular file, got %s", opts.Init, st.Mode().Type())
	}
	if opts.ModTime < 0 || opts.ModTime > 1<<32-1 {
		return fmt.Errorf("initramfs: ModTime: expected seconds between 0 and 2^32-1 (cpio newc), got %d", opts.ModTime)
	}

	var cleanups []func()
	defer func() {
		for _, c := range cleanups {
			c()
		}
	}()

	t := fstree.New()
	mt := opts.ModTime
	for _, d := range []string{"dev", "proc", "sys", "run", strings.TrimPrefix(bootrecord.NewRoot, "/"), "lib/modules"} {
		if err := t.MkdirAll(d, mt); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	own := []struct {
		p string
		n *fstree.Node
	}{
		{"init", &fstree.Node{Mode: 0o755, ModTime: mt, Size: st.Size(), Source: fstree.HostFile(opts.Init)}},
		{"dev/console", &fstree.Node{Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, ModTime: mt, Major: 5, Minor: 1}},
	}

	var loadOrder strings.Builder
	if len(opts.Modules) > 0 {
		mods, err := ResolveModules(opts.KernelTree, opts.KernelRelease, opts.Modules)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		modDir, _ := findModulesDir(opts.KernelTree, opts.KernelRelease)
		for _, p := range mods {
			if err := ctx.Err(); err != nil {
				return err
			}
			f, cleanup, err := openModule(opts.KernelTree.Get(p), opts.TempDir)
			if err != nil {
				return fmt.Errorf("initramfs: module /%s: %w", p, err)
			}
			cleanups = append(cleanups, cleanup)
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("initramfs: module /%s: %w", p, err)
			}
			// The archive always uses lib/modules/<release>/, whichever of
			// lib or usr/lib the tree keeps them in.
			dst := modulesDir(opts.KernelRelease) + strings.TrimPrefix(p, modDir)
			for _, ext := range moduleExts {
				if strings.HasSuffix(dst, ext) {
					dst = strings.TrimSuffix(dst, ext) + ".ko"
					break
				}
			}
			own = append(own, struct {
				p string
				n *fstree.Node
			}{dst, &fstree.Node{Mode: 0o644, ModTime: mt, Size: fi.Size(), Source: fstree.HostFile(f.Name())}})
			loadOrder.WriteString("/" + dst + "\n")
		}
		log.Info("modules resolved", "asked", len(opts.Modules), "with_dependencies", len(mods))
	}
	own = append(own, struct {
		p string
		n *fstree.Node
	}{loadOrderPath, &fstree.Node{Mode: 0o644, ModTime: mt, Size: int64(loadOrder.Len()), Source: fstree.Bytes(loadOrder.String())}})

	if opts.Extra != nil {
		err := opts.Extra.Walk(func(p string, n *fstree.Node) error {
			if p == "." {
				return nil
			}
			if old := t.Get(p); old != nil {
				if old.IsDir() && n.IsDir() {
					return nil // a mount point Build makes anyway
				}
				return fmt.Errorf("extra file /%s: collides with a path Build writes", p)
			}
			return t.Put(p, n)
		})
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	for _, o := range own {
		if old := t.Get(o.p); old != nil {
			return fmt.Errorf("initramfs: extra file /%s: collides with a path Build writes", o.p)
		}
		if err := t.Put(o.p, o.n); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	return writeArchive(ctx, w, t, opts, log)
}

// writeArchive writes t as cpio, compressed as opts says, to w.
func writeArchive(ctx context.Context, w io.Writer, t *fstree.Tree, opts Options, log *slog.Logger) error {
	var out io.Writer = w
	var closeOut func() error = func() error { return nil }
	switch opts.Compression {
	case Zstd:
		// One encoder goroutine keeps the output independent of the machine.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("initramfs: zstd: %w", err)
		}
		out, closeOut = zw, zw.Close
	case None:
	default:
		return fmt.Errorf("initramfs: Compression: expected Zstd or None, got %d", opts.Compression)
	}
	cw := &countingWriter{w: out}
	rw := cpio.Newc.Writer(cw)

	// Hard links share a node: count the paths of each, number inodes in
	// walk order so the archive is reproducible.
	nlink := map[*fstree.Node]uint64{}
	_ = t.Walk(func(_ string, n *fstree.Node) error { nlink[n]++; return nil })
	ino := map[*fstree.Node]uint64{}
	written := map[*fstree.Node]bool{}
	entries := 0
	err := t.Walk(func(p string, n *fstree.Node) error {
		if p == "." {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, ok := ino[n]; !ok {
			ino[n] = uint64(len(ino) + 1)
		}
		info := cpio.Info{
			Ino:   ino[n],
			Mode:  unixMode(n.Mode),
			UID:   uint64(n.UID),
			GID:   uint64(n.GID),
			NLink: nlink[n],
			MTime: uint64(opts.ModTime),
			Name:  p,
		}
		rec := cpio.Record{Info: info}
		switch {
		case n.IsDir():
			rec.NLink = 2
		case n.IsSymlink():
			rec.ReaderAt = strings.NewReader(n.Target)
			rec.FileSize = uint64(len(n.Target))
		case n.Mode&fs.ModeDevice != 0:
			rec.Rmajor, rec.Rminor = uint64(n.Major), uint64(n.Minor)
		case n.IsRegular():
			if written[n] {
				break // later hard link: the data went with the first path
			}
			written[n] = true
			if n.Size > 0 {
				if n.Source == nil {
					return fmt.Errorf("/%s: regular file of %d bytes has no content source", p, n.Size)
				}
				rc, err := n.Source.Open()
				if err != nil {
					return fmt.Errorf("/%s: %w", p, err)
				}
				ra := newSeqReaderAt(rc)
				defer ra.Close()
				rec.ReaderAt = ra
				rec.FileSize = uint64(n.Size)
			}
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("/%s: %w", p, err)
		}
		entries++
		return nil
	})
	if err == nil {
		err = cpio.WriteTrailer(rw)
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initramfs: writing archive: %w", err)
	}
	log.Info("initramfs written", "entries", entries, "cpio_bytes", cw.n)
	return nil
}

// unixMode converts a Go file mode to the st_mode bits cpio stores.
func unixMode(m fs.FileMode) uint64 {
	mode := uint64(m.Perm())
	switch {
	case m.IsDir():
		mode |= cpio.S_IFDIR
	case m&fs.ModeSymlink != 0:
		mode |= cpio.S_IFLNK
	case m&fs.ModeCharDevice != 0:
		mode |= cpio.S_IFCHR
	case m&fs.ModeDevice != 0:
		mode |= cpio.S_IFBLK
	case m&fs.ModeNamedPipe != 0:
		mode |= cpio.S_IFIFO
	case m&fs.ModeSocket != 0:
		mode |= cpio.S_IFSOCK
	default:
		mode |= cpio.S_IFREG
	}
	if m&fs.ModeSetuid != 0 {
		mode |= cpio.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		mode |= cpio.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		mode |= cpio.S_ISVTX
	}
	return mode
}

// seqReaderAt lets the cpio writer, which reads file contents through
// io.ReaderAt at increasing offsets, stream from a plain reader.
type seqReaderAt struct {
	r      io.ReadCloser
	off    int64
	closed bool
}

func newSeqReaderAt(r io.ReadCloser) *seqReaderAt { return &seqReaderAt{r: r} }

func (s *seqReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != s.off {
		return 0, fmt.Errorf("non-sequential read at %d, expected %d", off, s.off)
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (s *seqReaderAt) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.r.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

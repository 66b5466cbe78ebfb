// Package squashfs writes an fstree.Tree as a squashfs 4.0 image compressed
// with zstd: the read-only root filesystem of a Plumb release.
//
// Write is the only entry point. It streams file contents from the tree's
// sources through a pipeline (one reader goroutine in tree order, N zstd
// workers, one writer putting blocks out in order), so memory stays bounded
// by a fixed number of blocks in flight plus the metadata of the tree. The
// output depends only on the tree and the Options: the same input gives the
// same bytes whatever the number of workers. The layout is described in
// README.md beside this file.
package squashfs

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"runtime"

	"github.com/plumb-os/plumb/internal/fstree"
)

// Options tune the image. The zero value is valid.
type Options struct {
	Level     int    // zstd level (1..22); 0 means 15
	BlockSize uint32 // data block size, power of two 4 KiB..1 MiB; 0 means 128 KiB
	Workers   int    // parallel compressors; 0 means runtime.GOMAXPROCS(0)
	ModTime   int64  // superblock mkfs time (reproducibility); file times come from the tree
}

// Stats describes a written image.
type Stats struct {
	Bytes     int64 // image size, padded to 4 KiB
	Inodes    int   // inodes (hard links count once)
	Files     int   // regular-file inodes
	DataBytes int64 // uncompressed bytes of regular files (hard links count once)
}

const (
	magic          = 0x73717368
	compZstd       = 6
	metadataSize   = 8192
	superblockSize = 96
	padTo          = 4096

	invalidFrag  = 0xFFFFFFFF
	invalidXattr = 0xFFFFFFFF
	invalidBlk   = 0xFFFFFFFFFFFFFFFF

	flagDuplicates   = 0x0040
	flagExportable   = 0x0080
	flagCompressOpts = 0x0400

	metaUncompressed = 0x8000  // metadata block header: stored uncompressed
	dataUncompressed = 1 << 24 // data block / fragment size: stored uncompressed
)

// Inode types; the extended ("long") variant of each basic type is +7.
const (
	typeDir     = 1
	typeFile    = 2
	typeSymlink = 3
	typeBlk     = 4
	typeChr     = 5
	typeFifo    = 6
	typeSock    = 7
	extended    = 7
)

func (o Options) withDefaults() (Options, error) {
	if o.Level == 0 {
		o.Level = 15
	}
	if o.Level < 1 || o.Level > 22 {
		return o, fmt.Errorf("squashfs options: level: expected 1..22, got %d", o.Level)
	}
	if o.BlockSize == 0 {
		o.BlockSize = 128 << 10
	}
	if o.BlockSize < 4<<10 || o.BlockSize > 1<<20 || bits.OnesCount32(o.BlockSize) != 1 {
		return o, fmt.Errorf("squashfs options: block size: expected a power of two from 4096 to 1048576, got %d", o.BlockSize)
	}
	if o.Workers < 0 {
		return o, fmt.Errorf("squashfs options: workers: expected 0 (all cores) or more, got %d", o.Workers)
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ModTime < 0 || o.ModTime > math.MaxUint32 {
		return o, fmt.Errorf("squashfs options: mod time: expected 0..%d seconds, got %d", uint32(math.MaxUint32), o.ModTime)
	}
	return o, nil
}

// posWriter counts the bytes written through a buffer.
type posWriter struct {
	w   *bufio.Writer
	pos int64
}

func (p *posWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pos += int64(n)
	return n, err
}

// Write writes the tree t as a squashfs image to w, starting at offset 0 of w.
// It leaves w positioned at the end of the image. On error, w holds a
// partial image that the caller should discard.
func Write(ctx context.Context, w io.WriteSeeker, t *fstree.Tree, opts Options) (Stats, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if t == nil {
		return Stats{}, errors.New("squashfs: nil tree")
	}
	b, err := plan(t, opts)
	if err != nil {
		return Stats{}, err
	}
	if _, err := w.Seek(0, io.SeekStart); err != nil {
		return Stats{}, fmt.Errorf("squashfs: seeking to the start: %w", err)
	}
	out := &posWriter{w: bufio.NewWriterSize(w, 1<<20)}

	// Superblock placeholder, then the compressor options as one
	// uncompressed metadata block holding the zstd level.
	head := make([]byte, superblockSize+2+4)
	binary.LittleEndian.PutUint16(head[superblockSize:], metaUncompressed|4)
	binary.LittleEndian.PutUint32(head[superblockSize+2:], uint32(opts.Level))
	if _, err := out.Write(head); err != nil {
		return Stats{}, fmt.Errorf("squashfs: writing header: %w", err)
	}

	if err := b.writeData(ctx, out); err != nil {
		return Stats{}, err
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	sb, err := b.writeTables(out)
	if err != nil {
		return Stats{}, err
	}
	bytesUsed := out.pos
	if pad := (padTo - bytesUsed%padTo) % padTo; pad > 0 {
		if _, err := out.Write(make([]byte, pad)); err != nil {
			return Stats{}, fmt.Errorf("squashfs: padding: %w", err)
		}
	}
	total := out.pos
	if err := out.w.Flush(); err != nil {
		return Stats{}, fmt.Errorf("squashfs: writing image: %w", err)
	}

	sb.bytesUsed = uint64(bytesUsed)
	sb.modTime = uint32(opts.ModTime)
	if _, err := w.Seek(0, io.SeekStart); err != nil {
		return Stats{}, fmt.Errorf("squashfs: seeking to the superblock: %w", err)
	}
	if _, err := w.Write(sb.marshal()); err != nil {
		return Stats{}, fmt.Errorf("squashfs: writing superblock: %w", err)
	}
	if _, err := w.Seek(total, io.SeekStart); err != nil {
		return Stats{}, fmt.Errorf("squashfs: seeking to the end: %w", err)
	}
	return Stats{Bytes: total, Inodes: len(b.inodes), Files: len(b.files), DataBytes: b.dataBytes}, nil
}

type superblock struct {
	inodes, modTime, blockSize, fragments uint32
	blockLog, flags, ids                  uint16
	rootInode, bytesUsed                  uint64
	idTable, xattrTable, inodeTable       uint64
	dirTable, fragTable, exportTable      uint64
}

func (s *superblock) marshal() []byte {
	b := make([]byte, superblockSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], s.inodes)
	le.PutUint32(b[8:], s.modTime)
	le.PutUint32(b[12:], s.blockSize)
	le.PutUint32(b[16:], s.fragments)
	le.PutUint16(b[20:], compZstd)
	le.PutUint16(b[22:], s.blockLog)
	le.PutUint16(b[24:], s.flags)
	le.PutUint16(b[26:], s.ids)
	le.PutUint16(b[28:], 4) // version 4.0
	le.PutUint16(b[30:], 0)
	le.PutUint64(b[32:], s.rootInode)
	le.PutUint64(b[40:], s.bytesUsed)
	le.PutUint64(b[48:], s.idTable)
	le.PutUint64(b[56:], s.xattrTable)
	le.PutUint64(b[64:], s.inodeTable)
	le.PutUint64(b[72:], s.dirTable)
	le.PutUint64(b[80:], s.fragTable)
	le.PutUint64(b[88:], s.exportTable)
	return b
}

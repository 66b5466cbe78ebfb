package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/klauspost/compress/zstd"
)

// This file is the encoder's reader of squashfs images written by
// builder/squashfs: just enough to list regular files with the place of
// their blocks. The decoder never parses squashfs.

const (
	sqMagic        = 0x73717368
	sqUncompressed = 1 << 24
	sqInvalidFrag  = 0xFFFFFFFF
)

type sqSuper struct {
	inodes, blockSize, fragments uint32
	compressor, blockLog, flags  uint16
	rootInode, bytesUsed         uint64
	inodeTable, dirTable         uint64
	fragTable                    uint64
}

// sqFile is one regular file inode reached from the directory tree.
type sqFile struct {
	path    string
	size    uint64
	start   uint64   // offset of the first block in the image
	blocks  []uint32 // stored sizes, with the uncompressed flag
	frag    uint32   // fragment block index or sqInvalidFrag
	fragOff uint32
}

// storedLen is the number of image bytes taken by the file's blocks.
func (f *sqFile) storedLen() uint64 {
	var n uint64
	for _, b := range f.blocks {
		n += uint64(b &^ sqUncompressed)
	}
	return n
}

type sqFrag struct {
	start uint64
	size  uint32 // stored size with the uncompressed flag
}

type sqImage struct {
	r     io.ReaderAt
	size  int64
	sb    sqSuper
	files []*sqFile
	frags []sqFrag
	dec   *zstd.Decoder
}

func readSqImage(r io.ReaderAt, size int64) (*sqImage, error) {
	var b [96]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("reading squashfs superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != sqMagic {
		return nil, fmt.Errorf("squashfs superblock: magic: expected 0x%x, got 0x%x", sqMagic, le.Uint32(b[0:]))
	}
	sb := sqSuper{
		inodes: le.Uint32(b[4:]), blockSize: le.Uint32(b[12:]), fragments: le.Uint32(b[16:]),
		compressor: le.Uint16(b[20:]), blockLog: le.Uint16(b[22:]), flags: le.Uint16(b[24:]),
		rootInode: le.Uint64(b[32:]), bytesUsed: le.Uint64(b[40:]),
		inodeTable: le.Uint64(b[64:]), dirTable: le.Uint64(b[72:]), fragTable: le.Uint64(b[80:]),
	}
	if sb.compressor != 6 {
		return nil, fmt.Errorf("squashfs superblock: compressor: expected 6 (zstd), got %d", sb.compressor)
	}
	if sb.blockSize < 4096 || sb.blockSize > 1<<20 || sb.bytesUsed > uint64(size) ||
		sb.inodeTable >= sb.dirTable || sb.dirTable > sb.bytesUsed {
		return nil, errors.New("squashfs superblock: inconsistent block size or table offsets")
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	im := &sqImage{r: r, size: size, sb: sb, dec: dec}
	inodes, inoPos, err := im.readMetaTable(sb.inodeTable, sb.dirTable)
	if err != nil {
		return nil, fmt.Errorf("reading inode table: %w", err)
	}
	dirEnd := sb.fragTable
	if sb.fragments == 0 || dirEnd > sb.bytesUsed {
		dirEnd = sb.bytesUsed
	}
	dirs, dirPos, err := im.readMetaTable(sb.dirTable, dirEnd)
	if err != nil && !errors.Is(err, errTrailing) {
		return nil, fmt.Errorf("reading directory table: %w", err)
	}
	if err := im.readFragTable(); err != nil {
		return nil, err
	}
	p := &sqParser{im: im, inodes: inodes, inoPos: inoPos, dirs: dirs, dirPos: dirPos}
	if err := p.walk(sb.rootInode, ".", 0); err != nil {
		return nil, err
	}
	return im, nil
}

var errTrailing = errors.New("trailing bytes")

// readMetaTable decompresses the metadata blocks in [start, end). It
// returns the bytes and a map from a block's offset (relative to start) to
// its offset in the bytes. A region that stops being metadata blocks ends
// the table with errTrailing (the directory table is followed by others).
func (im *sqImage) readMetaTable(start, end uint64) ([]byte, map[uint64]int, error) {
	var out []byte
	pos := map[uint64]int{}
	off := start
	var hdr [2]byte
	for off < end {
		if _, err := im.r.ReadAt(hdr[:], int64(off)); err != nil {
			return nil, nil, err
		}
		h := binary.LittleEndian.Uint16(hdr[:])
		n := uint64(h & 0x7fff)
		if n == 0 || off+2+n > end {
			return out, pos, errTrailing
		}
		buf := make([]byte, n)
		if _, err := im.r.ReadAt(buf, int64(off+2)); err != nil {
			return nil, nil, err
		}
		pos[off-start] = len(out)
		if h&0x8000 != 0 {
			out = append(out, buf...)
		} else {
			d, err := im.dec.DecodeAll(buf, nil)
			if err != nil || len(d) > 8192 {
				return out, pos, errTrailing
			}
			out = append(out, d...)
		}
		off += 2 + n
	}
	return out, pos, nil
}

func (im *sqImage) readFragTable() error {
	n := uint64(im.sb.fragments)
	if n == 0 {
		return nil
	}
	nIdx := (n + 511) / 512
	idx := make([]byte, 8*nIdx)
	if _, err := im.r.ReadAt(idx, int64(im.sb.fragTable)); err != nil {
		return fmt.Errorf("reading fragment index: %w", err)
	}
	var table []byte
	for i := range nIdx {
		blk := binary.LittleEndian.Uint64(idx[8*i:])
		var hdr [2]byte
		if _, err := im.r.ReadAt(hdr[:], int64(blk)); err != nil {
			return fmt.Errorf("reading fragment table: %w", err)
		}
		n := uint64(binary.LittleEndian.Uint16(hdr[:]) & 0x7fff)
		b, _, err := im.readMetaTable(blk, blk+2+n)
		if err != nil || len(b) < 16 {
			return fmt.Errorf("reading fragment table at %d: bad metadata block", blk)
		}
		table = append(table, b...)
	}
	if uint64(len(table)) < 16*n {
		return errors.New("reading fragment table: short table")
	}
	for i := range n {
		e := table[16*i:]
		im.frags = append(im.frags, sqFrag{start: binary.LittleEndian.Uint64(e), size: binary.LittleEndian.Uint32(e[8:])})
	}
	return nil
}

type sqParser struct {
	im             *sqImage
	inodes, dirs   []byte
	inoPos, dirPos map[uint64]int
}

func (p *sqParser) inodeAt(ref uint64) ([]byte, error) {
	base, ok := p.inoPos[ref>>16]
	if !ok {
		return nil, fmt.Errorf("inode reference 0x%x: no metadata block there", ref)
	}
	o := base + int(ref&0xffff)
	if o+16 > len(p.inodes) {
		return nil, fmt.Errorf("inode reference 0x%x: past the table", ref)
	}
	return p.inodes[o:], nil
}

func (p *sqParser) walk(ref uint64, name string, depth int) error {
	if depth > 256 {
		return errors.New("squashfs: directories nested too deep")
	}
	in, err := p.inodeAt(ref)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	typ := le.Uint16(in)
	var start, off uint32
	var size uint64
	switch typ {
	case 1:
		if len(in) < 32 {
			return errors.New("squashfs: short directory inode")
		}
		start, size, off = le.Uint32(in[16:]), uint64(le.Uint16(in[24:])), uint32(le.Uint16(in[26:]))
	case 8:
		if len(in) < 40 {
			return errors.New("squashfs: short directory inode")
		}
		size, start, off = uint64(le.Uint32(in[20:])), le.Uint32(in[24:]), uint32(le.Uint16(in[34:]))
	case 2, 9:
		return p.file(in, name)
	default:
		return nil
	}
	if size <= 3 {
		return nil
	}
	base, ok := p.dirPos[uint64(start)]
	if !ok {
		return fmt.Errorf("squashfs: directory %s: no metadata block at 0x%x", name, start)
	}
	d := base + int(off)
	end := d + int(size) - 3
	if end > len(p.dirs) {
		return fmt.Errorf("squashfs: directory %s: listing past the table", name)
	}
	for d < end {
		if d+12 > end {
			return fmt.Errorf("squashfs: directory %s: short header", name)
		}
		count := int(le.Uint32(p.dirs[d:])) + 1
		iblk := uint64(le.Uint32(p.dirs[d+4:]))
		d += 12
		for range count {
			if d+8 > end {
				return fmt.Errorf("squashfs: directory %s: short entry", name)
			}
			ioff := uint64(le.Uint16(p.dirs[d:]))
			nlen := int(le.Uint16(p.dirs[d+6:])) + 1
			if d+8+nlen > end {
				return fmt.Errorf("squashfs: directory %s: short name", name)
			}
			child := string(p.dirs[d+8 : d+8+nlen])
			d += 8 + nlen
			cp := child
			if name != "." {
				cp = path.Join(name, child)
			}
			if err := p.walk(iblk<<16|ioff, cp, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *sqParser) file(in []byte, name string) error {
	le := binary.LittleEndian
	f := &sqFile{path: name}
	var rest []byte
	if le.Uint16(in) == 2 {
		if len(in) < 32 {
			return errors.New("squashfs: short file inode")
		}
		f.start, f.frag, f.fragOff, f.size = uint64(le.Uint32(in[16:])), le.Uint32(in[20:]), le.Uint32(in[24:]), uint64(le.Uint32(in[28:]))
		rest = in[32:]
	} else {
		if len(in) < 56 {
			return errors.New("squashfs: short file inode")
		}
		f.start, f.size = le.Uint64(in[16:]), le.Uint64(in[24:])
		f.frag, f.fragOff = le.Uint32(in[44:]), le.Uint32(in[48:])
		rest = in[56:]
	}
	bs := uint64(p.im.sb.blockSize)
	n := f.size / bs
	if f.frag == sqInvalidFrag && f.size%bs != 0 {
		n++
	}
	if uint64(len(rest)) < 4*n {
		return fmt.Errorf("squashfs: %s: block list past the table", name)
	}
	f.blocks = make([]uint32, n)
	for i := range n {
		f.blocks[i] = le.Uint32(rest[4*i:])
	}
	if f.frag != sqInvalidFrag && f.frag >= p.im.sb.fragments {
		return fmt.Errorf("squashfs: %s: fragment %d of %d", name, f.frag, p.im.sb.fragments)
	}
	p.im.files = append(p.im.files, f)
	return nil
}

package squashfs

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/plumb-os/plumb/format/blockcodec"
)

// metaWriter packs a table into compressed metadata blocks of 8 KiB
// (each with a 2-byte header) held in memory.
type metaWriter struct {
	c      *blockcodec.BlockCompressor
	err    error    // first compression error
	cur    []byte   // pending uncompressed bytes
	out    []byte   // finished blocks
	starts []uint64 // offset of each finished block in out
}

// pos returns where the next byte goes: the offset of its block in the
// table and its offset inside the uncompressed block.
func (m *metaWriter) pos() (uint64, uint16) {
	return uint64(len(m.out)), uint16(len(m.cur))
}

func (m *metaWriter) ref() uint64 {
	blk, off := m.pos()
	return blk<<16 | uint64(off)
}

func (m *metaWriter) write(p []byte) {
	m.cur = append(m.cur, p...)
	for len(m.cur) >= metadataSize {
		m.block(m.cur[:metadataSize])
		m.cur = append(m.cur[:0], m.cur[metadataSize:]...)
	}
}

func (m *metaWriter) block(raw []byte) {
	m.starts = append(m.starts, uint64(len(m.out)))
	c, err := m.c.Compress(nil, raw)
	if err != nil && m.err == nil {
		m.err = fmt.Errorf("squashfs: compressing metadata: %w", err)
	}
	if err == nil && len(c) < len(raw) {
		m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(c)))
		m.out = append(m.out, c...)
		return
	}
	m.out = binary.LittleEndian.AppendUint16(m.out, uint16(len(raw))|metaUncompressed)
	m.out = append(m.out, raw...)
}

func (m *metaWriter) finish() ([]byte, error) {
	if len(m.cur) > 0 {
		m.block(m.cur)
		m.cur = m.cur[:0]
	}
	return m.out, m.err
}

// inodeWriter serialises inodes into an inode table.
type inodeWriter struct {
	buf []byte
}

func (w *inodeWriter) header(in *inode, typ uint16) {
	le := binary.LittleEndian
	w.buf = le.AppendUint16(w.buf[:0], typ)
	w.buf = le.AppendUint16(w.buf, perm(in.node.Mode))
	w.buf = le.AppendUint16(w.buf, in.uid)
	w.buf = le.AppendUint16(w.buf, in.gid)
	w.buf = le.AppendUint32(w.buf, uint32(in.node.ModTime))
	w.buf = le.AppendUint32(w.buf, in.num)
}

// writeTree writes the inodes of e's subtree and the directory listings,
// contents before the directory, and returns e's inode reference.
func (b *builder) writeTree(e *entry, parent uint32, it, dt *metaWriter, iw *inodeWriter) error {
	for _, c := range e.children {
		if c.ino.typ == typeDir {
			if err := b.writeTree(c, e.ino.num, it, dt, iw); err != nil {
				return err
			}
		} else if !c.ino.done {
			b.writeInode(c.ino, it, iw)
		}
	}
	blk, off := dt.pos()
	listing, heads := dirListing(e.children)
	p0 := uint64(len(dt.starts))*metadataSize + uint64(off) // uncompressed position of the listing
	dt.write(listing)
	size := uint64(len(listing)) + 3 // the kernel counts "." and ".." as 3 bytes
	if blk > math.MaxUint32 || size > math.MaxUint32 {
		return fmt.Errorf("squashfs: %s: directory table too large", e.path)
	}

	// Directory index: the first header in each further metadata block,
	// so that the kernel's lookups skip to the right block.
	le := binary.LittleEndian
	var index []byte
	count := 0
	prev := p0 / metadataSize
	for _, h := range heads {
		k := (p0 + uint64(h.off)) / metadataSize
		if k == prev {
			continue
		}
		prev = k
		start := uint64(len(dt.out)) // the block being filled
		if k < uint64(len(dt.starts)) {
			start = dt.starts[k]
		}
		index = le.AppendUint32(index, uint32(h.off))
		index = le.AppendUint32(index, uint32(start))
		index = le.AppendUint32(index, uint32(len(h.name)-1))
		index = append(index, h.name...)
		count++
	}

	in := e.ino
	in.ref = it.ref()
	in.done = true
	if size <= math.MaxUint16 && in.xattr == invalidXattr && count == 0 {
		iw.header(in, typeDir)
		iw.buf = le.AppendUint32(iw.buf, uint32(blk))
		iw.buf = le.AppendUint32(iw.buf, in.nlink)
		iw.buf = le.AppendUint16(iw.buf, uint16(size))
		iw.buf = le.AppendUint16(iw.buf, off)
		iw.buf = le.AppendUint32(iw.buf, parent)
	} else {
		if count > math.MaxUint16 {
			return fmt.Errorf("squashfs: %s: directory needs %d index entries, more than 65535", e.path, count)
		}
		iw.header(in, typeDir+extended)
		iw.buf = le.AppendUint32(iw.buf, in.nlink)
		iw.buf = le.AppendUint32(iw.buf, uint32(size))
		iw.buf = le.AppendUint32(iw.buf, uint32(blk))
		iw.buf = le.AppendUint32(iw.buf, parent)
		iw.buf = le.AppendUint16(iw.buf, uint16(count))
		iw.buf = le.AppendUint16(iw.buf, off)
		iw.buf = le.AppendUint32(iw.buf, in.xattr)
		iw.buf = append(iw.buf, index...)
	}
	it.write(iw.buf)
	return nil
}

// dirListing encodes a directory's entries: runs of at most 256 entries
// whose inodes share a metadata block and lie within ±32767 inode numbers
// of the run's first, each run behind a header. It also returns where the
// headers are, for the directory index.
func dirListing(children []*entry) ([]byte, []dirHeader) {
	le := binary.LittleEndian
	var out []byte
	var heads []dirHeader
	for i := 0; i < len(children); {
		first := children[i].ino
		blk := first.ref >> 16
		j := i
		for j < len(children) && j-i < 256 {
			in := children[j].ino
			d := int64(in.num) - int64(first.num)
			if in.ref>>16 != blk || d > math.MaxInt16 || d < math.MinInt16 {
				break
			}
			j++
		}
		heads = append(heads, dirHeader{off: len(out), name: children[i].name})
		out = le.AppendUint32(out, uint32(j-i-1))
		out = le.AppendUint32(out, uint32(blk))
		out = le.AppendUint32(out, first.num)
		for _, c := range children[i:j] {
			out = le.AppendUint16(out, uint16(c.ino.ref&0xffff))
			out = le.AppendUint16(out, uint16(int16(int64(c.ino.num)-int64(first.num))))
			out = le.AppendUint16(out, c.ino.typ)
			out = le.AppendUint16(out, uint16(len(c.name)-1))
			out = append(out, c.name...)
		}
		i = j
	}
	return out, heads
}

// dirHeader is where a header starts in a listing and its first name.
type dirHeader struct {
	off  int
	name string
}

// writeInode writes a non-directory inode.
func (b *builder) writeInode(in *inode, it *metaWriter, iw *inodeWriter) {
	in.ref = it.ref()
	in.done = true
	n := in.node
	le := binary.LittleEndian
	ext := in.xattr != invalidXattr
	typ := in.typ
	if ext {
		typ += extended
	}
	switch in.typ {
	case typeFile:
		size := uint64(n.Size)
		if !ext && in.nlink == 1 && in.sparse == 0 && in.start <= math.MaxUint32 && size <= math.MaxUint32 {
			iw.header(in, typeFile)
			iw.buf = le.AppendUint32(iw.buf, uint32(in.start))
			iw.buf = le.AppendUint32(iw.buf, in.frag)
			iw.buf = le.AppendUint32(iw.buf, in.fragOff)
			iw.buf = le.AppendUint32(iw.buf, uint32(size))
		} else {
			iw.header(in, typeFile+extended)
			iw.buf = le.AppendUint64(iw.buf, in.start)
			iw.buf = le.AppendUint64(iw.buf, size)
			iw.buf = le.AppendUint64(iw.buf, in.sparse)
			iw.buf = le.AppendUint32(iw.buf, in.nlink)
			iw.buf = le.AppendUint32(iw.buf, in.frag)
			iw.buf = le.AppendUint32(iw.buf, in.fragOff)
			iw.buf = le.AppendUint32(iw.buf, in.xattr)
		}
		for _, s := range in.blocks {
			iw.buf = le.AppendUint32(iw.buf, s)
		}
	case typeSymlink:
		iw.header(in, typ)
		iw.buf = le.AppendUint32(iw.buf, in.nlink)
		iw.buf = le.AppendUint32(iw.buf, uint32(len(n.Target)))
		iw.buf = append(iw.buf, n.Target...)
		if ext {
			iw.buf = le.AppendUint32(iw.buf, in.xattr)
		}
	case typeBlk, typeChr:
		iw.header(in, typ)
		iw.buf = le.AppendUint32(iw.buf, in.nlink)
		iw.buf = le.AppendUint32(iw.buf, rdev(n.Major, n.Minor))
		if ext {
			iw.buf = le.AppendUint32(iw.buf, in.xattr)
		}
	case typeFifo, typeSock:
		iw.header(in, typ)
		iw.buf = le.AppendUint32(iw.buf, in.nlink)
		if ext {
			iw.buf = le.AppendUint32(iw.buf, in.xattr)
		}
	}
	it.write(iw.buf)
}

// writeTables writes the metadata after the data, in the order the kernel
// checks it: inodes, directories, fragment, export, id and xattr tables.
func (b *builder) writeTables(out *posWriter) (*superblock, error) {
	enc, err := blockcodec.NewBlockCompressor(b.opts.Level)
	if err != nil {
		return nil, fmt.Errorf("squashfs: creating zstd compressor: %w", err)
	}
	defer enc.Close()
	it := &metaWriter{c: enc}
	dt := &metaWriter{c: enc}
	if err := b.writeTree(b.root, uint32(len(b.inodes)+1), it, dt, &inodeWriter{}); err != nil {
		return nil, err
	}
	sb := &superblock{
		inodes:    uint32(len(b.inodes)),
		blockSize: b.opts.BlockSize,
		fragments: uint32(len(b.fragments)),
		blockLog:  uint16(bits.TrailingZeros32(b.opts.BlockSize)),
		flags:     flagCompressOpts | flagExportable,
		ids:       uint16(len(b.ids)),
		rootInode: b.root.ino.ref,
	}
	if b.dedup {
		sb.flags |= flagDuplicates
	}
	le := binary.LittleEndian
	write := func(p []byte) error {
		if _, err := out.Write(p); err != nil {
			return fmt.Errorf("squashfs: writing tables: %w", err)
		}
		return nil
	}
	inodes, err := it.finish()
	if err != nil {
		return nil, err
	}
	dirs, err := dt.finish()
	if err != nil {
		return nil, err
	}
	sb.inodeTable = uint64(out.pos)
	if err := write(inodes); err != nil {
		return nil, err
	}
	sb.dirTable = uint64(out.pos)
	if err := write(dirs); err != nil {
		return nil, err
	}

	var frags []byte
	for _, f := range b.fragments {
		frags = le.AppendUint64(frags, f.start)
		frags = le.AppendUint32(frags, f.size)
		frags = le.AppendUint32(frags, 0)
	}
	if sb.fragTable, err = writeIndexed(out, enc, frags, nil); err != nil {
		return nil, err
	}

	var export []byte
	for _, in := range b.inodes {
		export = le.AppendUint64(export, in.ref)
	}
	if sb.exportTable, err = writeIndexed(out, enc, export, nil); err != nil {
		return nil, err
	}

	var ids []byte
	for _, id := range b.ids {
		ids = le.AppendUint32(ids, id)
	}
	if sb.idTable, err = writeIndexed(out, enc, ids, nil); err != nil {
		return nil, err
	}

	sb.xattrTable = invalidBlk
	if len(b.xattrs.sets) > 0 {
		kv := &metaWriter{c: enc}
		var idt []byte
		for _, s := range b.xattrs.sets {
			idt = le.AppendUint64(idt, kv.ref())
			idt = le.AppendUint32(idt, s.count)
			idt = le.AppendUint32(idt, s.size)
			kv.write(s.kv)
		}
		kvBlocks, err := kv.finish()
		if err != nil {
			return nil, err
		}
		kvStart := uint64(out.pos)
		if err := write(kvBlocks); err != nil {
			return nil, err
		}
		var head []byte
		head = le.AppendUint64(head, kvStart)
		head = le.AppendUint32(head, uint32(len(b.xattrs.sets)))
		head = le.AppendUint32(head, 0)
		if sb.xattrTable, err = writeIndexed(out, enc, idt, head); err != nil {
			return nil, err
		}
	}
	return sb, nil
}

// writeIndexed writes data as metadata blocks, then header (if any), then
// the array of the blocks' absolute positions. It returns the position of
// the header, or of the array when there is no header.
func writeIndexed(out *posWriter, c *blockcodec.BlockCompressor, data, header []byte) (uint64, error) {
	m := &metaWriter{c: c}
	m.write(data)
	base := uint64(out.pos)
	blocks, err := m.finish()
	if err != nil {
		return 0, err
	}
	if _, err := out.Write(blocks); err != nil {
		return 0, fmt.Errorf("squashfs: writing tables: %w", err)
	}
	start := uint64(out.pos)
	var index []byte
	index = append(index, header...)
	for _, s := range m.starts {
		index = binary.LittleEndian.AppendUint64(index, base+s)
	}
	if _, err := out.Write(index); err != nil {
		return 0, fmt.Errorf("squashfs: writing tables: %w", err)
	}
	return start, nil
}

package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/plumb-os/plumb/builder/squashfs"
)

// source is a piece of old content: a stored block of the old image,
// decompressed, then sliced.
type source struct {
	off, stored   uint64
	kind          byte
	rawLen        uint64
	sliceOff, len uint64
}

// ublock is one block of a UNIT's output.
type ublock struct {
	mode    byte
	rawLen  uint64
	copyOff uint64 // blkCopy
	copyLen uint64
}

type unit struct {
	sources []source
	blocks  []ublock
	old     []byte // the old content (the sources' slices), encoder side
	content []byte // the new content
	ctrls   []ctrl
}

func (o *opWriter) varint(v int64) {
	o.tmp = binary.AppendVarint(o.tmp[:0], v)
	o.w.Write(o.tmp)
}

func (o *opWriter) unitOp(u *unit) error {
	if err := o.flushCopy(); err != nil {
		return err
	}
	if err := o.w.WriteByte(opUnit); err != nil {
		return err
	}
	o.uvarint(uint64(len(u.sources)))
	for _, s := range u.sources {
		o.uvarint(s.off)
		o.uvarint(s.stored)
		o.w.WriteByte(s.kind)
		o.uvarint(s.rawLen)
		o.uvarint(s.sliceOff)
		o.uvarint(s.len)
	}
	o.uvarint(uint64(len(u.blocks)))
	for _, b := range u.blocks {
		o.w.WriteByte(b.mode)
		o.uvarint(b.rawLen)
		if b.mode == blkCopy {
			o.uvarint(b.copyOff)
			o.uvarint(b.copyLen)
		}
	}
	// The patch: add (difference bytes), extra (literal bytes), seek.
	var opos int64
	npos := 0
	var diff []byte
	for _, c := range u.ctrls {
		o.uvarint(uint64(c.add))
		diff = diff[:0]
		for i := range c.add {
			diff = append(diff, u.content[npos+i]-u.old[opos+int64(i)])
		}
		o.w.Write(diff)
		npos += c.add
		opos += int64(c.add)
		o.uvarint(uint64(c.extra))
		o.w.Write(u.content[npos : npos+c.extra])
		npos += c.extra
		o.varint(c.seek)
		opos += c.seek
	}
	// bufio.Writer keeps the first error; the caller's Flush reports it.
	return nil
}

// recompress is builder/squashfs's rule for one block: a file block of
// zeros is sparse (no bytes), a block zstd does not shrink is stored raw,
// otherwise the zstd frame. It returns the stored bytes (which may alias
// raw or dst).
func recompress(c *squashfs.BlockCompressor, dst, raw []byte, fragment bool) ([]byte, error) {
	if !fragment && allZero(raw) {
		return nil, nil
	}
	out, err := c.Compress(dst[:0], raw)
	if err != nil {
		return nil, fmt.Errorf("re-compressing a block: %w", err)
	}
	if len(out) >= len(raw) {
		return raw, nil
	}
	return out, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	return len(b) == 0 || bytes.Count(b, []byte{0}) == len(b)
}

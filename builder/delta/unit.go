package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/format/blockcodec"
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
	inner              byte
	oldInner, newInner int // stream lengths, for innerZstd
	sources            []source
	blocks             []ublock
	old                []byte // the old content (the sources' slices), encoder side
	content            []byte // the new content
	ctrls              []ctrl
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
	o.w.WriteByte(u.inner)
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
	if u.inner == innerZstd {
		o.uvarint(uint64(u.oldInner))
		o.uvarint(uint64(u.newInner))
	}
	// The patch, in segments: instructions, then their difference bytes,
	// then their extra bytes (three kinds of data that compress better apart).
	var cs []ctrl
	for _, c := range u.ctrls {
		for c.add > maxSegDiff {
			cs = append(cs, ctrl{add: maxSegDiff})
			c.add -= maxSegDiff
		}
		cs = append(cs, c)
	}
	var opos int64
	npos := 0
	var diff []byte
	for len(cs) > 0 {
		n, sum := 0, 0
		for n < len(cs) && n < maxSegCtrls && sum+cs[n].add <= maxSegDiff {
			sum += cs[n].add
			n++
		}
		seg := cs[:n]
		cs = cs[n:]
		o.uvarint(uint64(n))
		for _, c := range seg {
			o.uvarint(uint64(c.add))
			o.uvarint(uint64(c.extra))
			o.varint(c.seek)
		}
		diff = diff[:0]
		p, q := npos, opos
		for _, c := range seg {
			for i := range c.add {
				diff = append(diff, u.content[p+i]-u.old[q+int64(i)])
			}
			p += c.add + c.extra
			q += int64(c.add) + c.seek
		}
		o.w.Write(diff)
		for _, c := range seg {
			npos += c.add
			o.w.Write(u.content[npos : npos+c.extra])
			npos += c.extra
			opos += int64(c.add) + c.seek
		}
	}
	// bufio.Writer keeps the first error; the caller's Flush reports it.
	return nil
}

// recompress is builder/squashfs's rule for one block: a file block of
// zeros is sparse (no bytes), a block zstd does not shrink is stored raw,
// otherwise the zstd frame. It returns the stored bytes (which may alias
// raw or dst).
func recompress(c *blockcodec.BlockCompressor, dst, raw []byte, fragment bool) ([]byte, error) {
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

// newInnerEncoder is the zstd encoder builder/initramfs compresses
// initramfs archives with (klauspost/compress, SpeedBetterCompression, one
// goroutine, default window and checksum): its output does not depend on
// how writes are cut, so a decoder that feeds it the patched stream gets
// the archive's bytes back.
func newInnerEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
}

package delta

import (
	"encoding/binary"

	wire "github.com/plumb-os/plumb/format/delta"
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
	lz4                lz4Fields
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
	if err := o.w.WriteByte(wire.OpUnit); err != nil {
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
		if b.mode == wire.BlkCopy {
			o.uvarint(b.copyOff)
			o.uvarint(b.copyLen)
		}
	}
	switch u.inner {
	case wire.InnerZstd:
		o.uvarint(uint64(u.oldInner))
		o.uvarint(uint64(u.newInner))
	case wire.InnerLZ4:
		f := u.lz4
		for _, v := range []int{f.version, f.oldOff, f.oldLen, f.oldRaw, f.newOff, f.newRaw, len(u.content)} {
			o.uvarint(uint64(v))
		}
	}
	// The patch, in segments: instructions, then their difference bytes,
	// then their extra bytes (three kinds of data that compress better apart).
	var cs []ctrl
	for _, c := range u.ctrls {
		for c.add > wire.MaxSegDiff {
			cs = append(cs, ctrl{add: wire.MaxSegDiff})
			c.add -= wire.MaxSegDiff
		}
		cs = append(cs, c)
	}
	var opos int64
	npos := 0
	var diff []byte
	for len(cs) > 0 {
		n, sum := 0, 0
		for n < len(cs) && n < wire.MaxSegCtrls && sum+cs[n].add <= wire.MaxSegDiff {
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

package delta

import (
	"bytes"
	"fmt"

	"github.com/klauspost/compress/zstd"
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
	stored  []byte // blkLiteral
	copyOff uint64 // blkCopy
	copyLen uint64
}

type unit struct {
	sources    []source
	contentLen uint64
	patch      []byte
	blocks     []ublock
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
	o.uvarint(u.contentLen)
	o.uvarint(uint64(len(u.patch)))
	o.w.Write(u.patch)
	o.uvarint(uint64(len(u.blocks)))
	for _, b := range u.blocks {
		o.w.WriteByte(b.mode)
		o.uvarint(b.rawLen)
		switch b.mode {
		case blkLiteral:
			o.uvarint(uint64(len(b.stored)))
			o.w.Write(b.stored)
		case blkCopy:
			o.uvarint(b.copyOff)
			o.uvarint(b.copyLen)
		}
	}
	// bufio.Writer keeps the first error; the caller's Flush reports it.
	return nil
}

// recompress is builder/squashfs's rule for one block: a file block of
// zeros is sparse (no bytes), a block zstd does not shrink is stored raw,
// otherwise the zstd frame. It returns the stored bytes (which may alias
// raw or dst).
func recompress(c *blockCompressor, dst, raw []byte, fragment bool) ([]byte, error) {
	if !fragment && allZero(raw) {
		return nil, nil
	}
	out, err := c.compress(dst[:0], raw)
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

// patchCodec makes and applies content patches: a zstd frame compressed
// with the old content as a raw dictionary.
type patchCodec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

const dictID = 1

func newPatchEncoder() (*patchCodec, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(2*maxUnit), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	return &patchCodec{enc: enc}, nil
}

func newPatchDecoder() (*patchCodec, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(maxUnit), zstd.WithDecoderMaxWindow(2*maxUnit))
	if err != nil {
		return nil, err
	}
	return &patchCodec{dec: dec}, nil
}

func (p *patchCodec) encode(dict, content []byte) ([]byte, error) {
	opt := zstd.WithEncoderDictDelete()
	if len(dict) > 0 {
		opt = zstd.WithEncoderDictRaw(dictID, dict)
	}
	if err := p.enc.ResetWithOptions(nil, opt); err != nil {
		return nil, err
	}
	return p.enc.EncodeAll(content, nil), nil
}

func (p *patchCodec) decode(dst, dict, patch []byte) ([]byte, error) {
	opts := []zstd.DOption{}
	if len(dict) > 0 {
		opts = append(opts, zstd.WithDecoderDictRaw(dictID, dict))
	}
	if err := p.dec.ResetWithOptions(nil, opts...); err != nil {
		return nil, err
	}
	return p.dec.DecodeAll(patch, dst[:0])
}

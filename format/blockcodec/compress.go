// Package blockcodec is the squashfs block codec of Plumb images: one
// block in, one zstd frame out, byte for byte as builder/squashfs writes
// its images and as the delta decoder (format/delta) re-compresses blocks
// of a base image. It is one of the two packages of the format layer that
// link more than the standard library (zstd; see format's package doc):
// the codec is part of the format, since a decoder with another zstd
// produces other bytes. CompressorID names the implementation compiled in.
package blockcodec

import "errors"

// compressor turns one block into one zstd frame. Each goroutine owns its
// own. Two implementations exist: libzstd through cgo (the default when
// cgo is on) and pure Go (klauspost/compress: CGO_ENABLED=0 or build tag
// purego_zstd), which compresses about 10% larger at level 15 because
// klauspost stops at roughly zstd level 11. Images are deterministic within one implementation; the two
// give different bytes.
type compressor interface {
	// compress returns src compressed; the result may reuse dst's memory.
	compress(dst, src []byte) ([]byte, error)
	close()
}

// BlockCompressor is the block compressor builder/squashfs writes images
// with and format/delta's decoder re-compresses blocks with: the very same
// code, and so the same bytes. Not safe for concurrent use: one
// per goroutine.
type BlockCompressor struct{ c compressor }

// NewBlockCompressor returns a compressor at a zstd level (1..22).
func NewBlockCompressor(level int) (*BlockCompressor, error) {
	c, err := newCompressor(level)
	if err != nil {
		return nil, err
	}
	return &BlockCompressor{c}, nil
}

// Compress returns src as one zstd frame, exactly as a block of an image;
// the result may reuse dst's memory (give it cap >= len(src)+len(src)/128+64).
func (b *BlockCompressor) Compress(dst, src []byte) ([]byte, error) { return b.c.compress(dst, src) }

// Close releases the compressor.
func (b *BlockCompressor) Close() { b.c.close() }

var errEmpty = errors.New("zstd: empty block")

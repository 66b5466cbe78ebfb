//go:build !cgo || purego_zstd

package blockcodec

import (
	"errors"

	"github.com/klauspost/compress/zstd"
)

// Compressor names the zstd implementation compiled in.
const Compressor = "klauspost/compress (pure Go)"

// CompressorID identifies the implementation and version for format/delta:
// a bundle that needs blocks re-compressed names it, and a decoder with
// another one refuses the bundle.
const CompressorID = "klauspost/compress-1.20.4"

type goZstd struct{ enc *zstd.Encoder }

func newCompressor(level int) (compressor, error) {
	// Single-segment frames without a checksum: the window is the block,
	// which the kernel's decompressor (window = block size) accepts.
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		return nil, err
	}
	return goZstd{enc}, nil
}

func (g goZstd) compress(dst, src []byte) ([]byte, error) {
	return g.enc.EncodeAll(src, dst[:0]), nil
}

func (g goZstd) close() { g.enc.Close() }

// BlockDecompressor decompresses blocks of an image (as format/delta's
// decoder reads its base). One per goroutine.
type BlockDecompressor struct{ dec *zstd.Decoder }

// NewBlockDecompressor returns a decompressor.
func NewBlockDecompressor() (*BlockDecompressor, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(1<<20), zstd.WithDecoderMaxWindow(1<<20))
	if err != nil {
		return nil, err
	}
	return &BlockDecompressor{dec}, nil
}

// DecompressInto decompresses the frame src into dst, which must be
// exactly as long as the frame's content, and returns how many bytes it
// wrote.
func (d *BlockDecompressor) DecompressInto(dst, src []byte) (int, error) {
	if len(dst) == 0 || len(src) == 0 {
		return 0, errEmpty
	}
	out, err := d.dec.DecodeAll(src, dst[:0])
	if err != nil {
		return 0, err
	}
	if len(out) > len(dst) || &out[0] != &dst[0] {
		return 0, errors.New("zstd: block larger than expected")
	}
	return len(out), nil
}

// Close releases the decompressor.
func (d *BlockDecompressor) Close() { d.dec.Close() }

//go:build !cgo || purego_zstd

package squashfs

import "github.com/klauspost/compress/zstd"

// Compressor names the zstd implementation compiled in.
const Compressor = "klauspost/compress (pure Go)"

// CompressorID identifies the implementation and version for builder/delta:
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

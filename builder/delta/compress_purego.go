//go:build !cgo || purego_zstd

package delta

import "github.com/klauspost/compress/zstd"

// compressorName names the zstd implementation compiled in; it must equal
// the one builder/squashfs compiles in (same build tags, same library
// version), since the decoder re-compresses blocks with it.
const compressorName = "klauspost/compress-1.20.4"

type blockCompressor struct{ enc *zstd.Encoder }

func newBlockCompressor(level int) (*blockCompressor, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		return nil, err
	}
	return &blockCompressor{enc}, nil
}

// compress is builder/squashfs's compressor: one frame per block.
func (c *blockCompressor) compress(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

func (c *blockCompressor) close() { c.enc.Close() }

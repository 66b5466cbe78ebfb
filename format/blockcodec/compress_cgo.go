//go:build cgo && !purego_zstd

package blockcodec

import "github.com/DataDog/zstd"

// Compressor names the zstd implementation compiled in.
const Compressor = "libzstd through cgo (DataDog/zstd v1.5.7)"

// CompressorID identifies the implementation and version for format/delta:
// a bundle that needs blocks re-compressed names it, and a decoder with
// another one refuses the bundle.
const CompressorID = "libzstd/DataDog-zstd-1.5.7"

type cZstd struct {
	ctx   zstd.Ctx
	level int
}

func newCompressor(level int) (compressor, error) {
	return &cZstd{ctx: zstd.NewCtx(), level: level}, nil
}

// compress makes a frame with the content size and, since the window
// shrinks to the block, the single-segment flag, as mksquashfs does.
func (c *cZstd) compress(dst, src []byte) ([]byte, error) {
	return c.ctx.CompressLevel(dst[:cap(dst)], src, c.level)
}

func (c *cZstd) close() {}

// BlockDecompressor decompresses blocks of an image (libzstd here, as
// format/delta's decoder reads its base). One per goroutine.
type BlockDecompressor struct{ ctx zstd.Ctx }

// NewBlockDecompressor returns a decompressor.
func NewBlockDecompressor() (*BlockDecompressor, error) {
	return &BlockDecompressor{ctx: zstd.NewCtx()}, nil
}

// DecompressInto decompresses the frame src into dst, which must be
// exactly as long as the frame's content, and returns how many bytes it
// wrote.
func (d *BlockDecompressor) DecompressInto(dst, src []byte) (int, error) {
	if len(dst) == 0 || len(src) == 0 {
		return 0, errEmpty
	}
	return d.ctx.DecompressInto(dst, src)
}

// Close releases the decompressor.
func (d *BlockDecompressor) Close() {}

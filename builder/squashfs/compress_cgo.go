//go:build cgo && !purego_zstd

package squashfs

import "github.com/DataDog/zstd"

// Compressor names the zstd implementation compiled in.
const Compressor = "libzstd through cgo (DataDog/zstd v1.5.7)"

// CompressorID identifies the implementation and version for builder/delta:
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

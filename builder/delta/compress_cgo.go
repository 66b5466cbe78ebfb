//go:build cgo && !purego_zstd

package delta

import "github.com/DataDog/zstd"

// compressorName names the zstd implementation compiled in; it must equal
// the one builder/squashfs compiles in (same build tags, same library
// version), since the decoder re-compresses blocks with it.
const compressorName = "libzstd/DataDog-zstd-1.5.7"

type blockCompressor struct {
	ctx   zstd.Ctx
	level int
}

func newBlockCompressor(level int) (*blockCompressor, error) {
	return &blockCompressor{ctx: zstd.NewCtx(), level: level}, nil
}

// compress is builder/squashfs's compressor: one frame per block.
func (c *blockCompressor) compress(dst, src []byte) ([]byte, error) {
	return c.ctx.CompressLevel(dst[:cap(dst)], src, c.level)
}

func (c *blockCompressor) close() {}

package delta

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/format/blockcodec"
)

// Recompress is builder/squashfs's rule for one block: a file block of
// zeros is sparse (no bytes), a block zstd does not shrink is stored raw,
// otherwise the zstd frame. It returns the stored bytes (which may alias
// raw or dst).
func Recompress(c *blockcodec.BlockCompressor, dst, raw []byte, fragment bool) ([]byte, error) {
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

// NewInnerEncoder is the zstd encoder builder/initramfs compresses
// initramfs archives with (klauspost/compress, SpeedBetterCompression, one
// goroutine, default window and checksum): its output does not depend on
// how writes are cut, so a decoder that feeds it the patched stream gets
// the archive's bytes back. WithLowerEncoderMem keeps one window of
// history (plus a block) instead of two, 8 MiB less, and writes the same
// bytes: the history is only moved when it is full, and a stream of at
// most MaxInner never fills it (TestInnerEncoderLowMem checks the bytes).
func NewInnerEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true))
}

//go:build cgo && !purego_zstd

package delta

import (
	"io"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/DataDog/zstd"
	kzstd "github.com/klauspost/compress/zstd"
)

// bodyLevel is libzstd's level for the body: 19 is the strongest whose
// window (2^23 = 8 MiB for a stream of unknown size) stays within
// bodyWindow, which bounds the decoder's memory.
const bodyLevel = 19

// newBodyWriter returns the body's compressor: libzstd at bodyLevel, or
// klauspost at level (1..4) when the caller asked for one.
func newBodyWriter(w io.Writer, optLevel int, level kzstd.EncoderLevel) (io.WriteCloser, error) {
	if optLevel != 0 {
		return kzstd.NewWriter(w, kzstd.WithEncoderLevel(level), kzstd.WithWindowSize(wire.BodyWindow))
	}
	return zstd.NewWriterLevel(w, bodyLevel), nil
}

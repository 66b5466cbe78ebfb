//go:build !cgo || purego_zstd

package delta

import (
	"io"

	wire "github.com/plumb-os/plumb/format/delta"

	kzstd "github.com/klauspost/compress/zstd"
)

// newBodyWriter returns the body's compressor: klauspost at level, its
// window bounded by bodyWindow.
func newBodyWriter(w io.Writer, _ int, level kzstd.EncoderLevel) (io.WriteCloser, error) {
	return kzstd.NewWriter(w, kzstd.WithEncoderLevel(level), kzstd.WithWindowSize(wire.BodyWindow))
}

//go:build cgo && !purego_zstd

package delta

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/format/blockcodec"
)

// TestFlavoursDiffer records why the decoder's zstd must be the builder's:
// klauspost (pure Go, plumbd with CGO_ENABLED=0) does not reproduce
// libzstd's blocks, so a bundle for libzstd images applied by a pure-Go
// decoder would have to ship every changed block as literal bytes.
func TestFlavoursDiffer(t *testing.T) {
	raw := pseudoText(11, 128<<10)
	c, err := blockcodec.NewBlockCompressor(15)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lib, err := c.Compress(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(15)),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithSingleSegment(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	pure := enc.EncodeAll(raw, nil)
	t.Logf("libzstd %d bytes, klauspost %d bytes", len(lib), len(pure))
	if bytes.Equal(lib, pure) {
		t.Errorf("libzstd and klauspost gave the same block; the compressor name check in the header could be relaxed")
	}
}

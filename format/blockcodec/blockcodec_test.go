package blockcodec

import (
	"bytes"
	"testing"
)

// FuzzRoundTrip: a block compressed by the codec decompresses to itself,
// and compressing twice gives the same bytes (the delta decoder relies on
// it to rebuild the builder's blocks).
func FuzzRoundTrip(f *testing.F) {
	f.Add(bytes.Repeat([]byte("plumb "), 1000))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) == 0 || len(raw) > 1<<17 {
			return
		}
		c, err := NewBlockCompressor(15)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := c.Compress(make([]byte, 0, len(raw)+len(raw)/128+64), raw)
		if err != nil {
			t.Fatal(err)
		}
		a = bytes.Clone(a)
		b, err := c.Compress(make([]byte, 0, len(raw)+len(raw)/128+64), raw)
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("Compress is not deterministic")
		}
		d, err := NewBlockDecompressor()
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out := make([]byte, len(raw))
		if n, err := d.DecompressInto(out, a); err != nil || n != len(raw) || !bytes.Equal(out, raw) {
			t.Errorf("DecompressInto = %d, %v; want the %d bytes back", n, err, len(raw))
		}
	})
}

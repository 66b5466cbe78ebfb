package delta

import (
	"bytes"
	"math/rand"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestInnerEncoderLowMem: NewInnerEncoder (WithLowerEncoderMem) writes the
// bytes of the encoder builder/initramfs uses (the same without it), for
// streams up to MaxInner and beyond, whole or cut into small writes.
func TestInnerEncoderLowMem(t *testing.T) {
	compress := func(data []byte, chunk int, inner bool) []byte {
		var b bytes.Buffer
		var w *zstd.Encoder
		var err error
		if inner {
			w, err = NewInnerEncoder(&b)
		} else {
			w, err = zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
		}
		if err != nil {
			t.Fatal(err)
		}
		for len(data) > 0 {
			n := min(chunk, len(data))
			if _, err := w.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	r := rand.New(rand.NewSource(1))
	for _, n := range []int{0, 1, 1000, 128 << 10, 1 << 20, MaxInner - 1, MaxInner, MaxInner + 3<<20} {
		// Compressible like an archive: a quarter random bytes, the rest
		// copied from up to 300 bytes back.
		in := make([]byte, n)
		for i := range in {
			if i < 300 || r.Intn(4) == 0 {
				in[i] = byte(r.Intn(256))
			} else {
				in[i] = in[i-1-r.Intn(300)]
			}
		}
		for _, chunk := range []int{64 << 10, 1 << 20, 4093} {
			want, got := compress(in, chunk, false), compress(in, chunk, true)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes in writes of %d: NewInnerEncoder wrote %d bytes, the initramfs encoder %d", n, chunk, len(got), len(want))
			}
		}
	}
}

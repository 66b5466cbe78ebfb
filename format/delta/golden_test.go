package delta

import (
	"bytes"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

func sampleHeader() Header {
	h := Header{Version: Version, BaseSize: 4096 * 3, TargetSize: 4096 * 4, Compressor: "libzstd/DataDog-zstd-1.5.7", Level: 15, BlockSize: 131072}
	for i := range h.BaseSHA256 {
		h.BaseSHA256[i], h.TargetSHA256[i] = byte(i), byte(255-i)
	}
	return h
}

func TestGoldenHeader(t *testing.T) {
	h := sampleHeader()
	testutil.Golden(t, "testdata/header.golden.bin", h.Marshal())
}

// TestPreviousReleaseHeader reads the header the previous release wrote.
func TestPreviousReleaseHeader(t *testing.T) {
	got, err := ReadHeader(bytes.NewReader(testutil.ReadFixture(t, "testdata/prev/header.bin")))
	if err != nil || got != sampleHeader() {
		t.Errorf("ReadHeader(previous release) = %+v, %v; want %+v", got, err, sampleHeader())
	}
}

// FuzzReadHeader: no header panics the decoder; what it accepts marshals
// back to the same bytes.
func FuzzReadHeader(f *testing.F) {
	h := sampleHeader()
	f.Add(h.Marshal())
	f.Add([]byte("PLUMBDLT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if m := got.Marshal(); !bytes.Equal(m, b[:len(m)]) {
			t.Errorf("Marshal(ReadHeader(%x)) = %x", b, m)
		}
	})
}

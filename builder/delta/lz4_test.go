package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	wire "github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/format/lz4legacy"
	"github.com/plumb-os/plumb/internal/testutil"
)

func kernelTrees(t *testing.T, oldKernel, newKernel []byte) (old, new []byte) {
	base := tree{"etc/hostname": []byte("plumb\n"), "boot/vmlinuz": oldKernel}
	next := base.clone()
	next["boot/vmlinuz"] = newKernel
	_, o := build(t, base, nil)
	_, n := build(t, next, nil)
	return o, n
}

// TestLZ4Kernel: a real Debian kernel update (6.1.0-55 -> -56, LZ4
// bzImages) is patched as the decompressed kernel and the decoder
// re-compresses it to the very bytes; a corrupt kernel unit is refused
// with one line; a kernel whose payload liblz4 would not reproduce falls
// back to the patch of the stored file.
func TestLZ4Kernel(t *testing.T) {
	if !lz4legacy.Available {
		t.Fatal("this build has no liblz4 (cgo off): the LZ4 unit cannot be tested")
	}
	k55, k56 := testutil.DebianKernel(t, "6.1.0-55"), testutil.DebianKernel(t, "6.1.0-56")
	oldImg, newImg := kernelTrees(t, k55, k56)
	st, bundle := roundTrip(t, oldImg, newImg, Options{})
	t.Logf("kernel %d bytes, bundle %d bytes: %+v", len(k56), len(bundle), st)
	if st.LZ4Units != 1 {
		t.Fatalf("LZ4Units = %d, want 1: the kernel was not patched decompressed", st.LZ4Units)
	}
	var out bytes.Buffer
	ast, err := wire.Apply(t.Context(), &out, bytes.NewReader(oldImg), int64(len(oldImg)), bytes.NewReader(bundle))
	if err != nil || ast.LZ4Units != 1 || ast.LZ4Chunks > 14 {
		t.Errorf("Apply: %v, LZ4Units %d, LZ4Chunks %d; want 1 unit, each of the old kernel's 7 chunks decompressed about once", err, ast.LZ4Units, ast.LZ4Chunks)
	}
	t.Run("corrupt", func(t *testing.T) { lz4Corrupt(t, k55, k56, oldImg, bundle) })

	// Fallback: the same kernel whose payload liblz4 would not reproduce
	// (its last chunk stored as a literal-only LZ4 block, valid but not
	// `lz4 -9` output) is patched as stored, and still applies exactly.
	t.Run("fallback", func(t *testing.T) {
		oldImg, newImg := kernelTrees(t, k55, literalPayload(t, k56))
		st, fbundle := roundTrip(t, oldImg, newImg, Options{})
		t.Logf("literal-LZ4 kernel: bundle %d bytes: %+v", len(fbundle), st)
		if st.LZ4Units != 0 {
			t.Errorf("LZ4Units = %d for a payload liblz4 does not reproduce, want 0 (fallback)", st.LZ4Units)
		}
	})
}

// literalPayload returns k with the last chunk of its LZ4 payload
// re-written as a literal-only block (same uncompressed bytes; the setup
// header's payload_length updated, everything after the payload kept).
func literalPayload(t *testing.T, k []byte) []byte {
	off, n, err := lz4legacy.BzImageStream(k)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := lz4legacy.Chunks(k[off : off+n])
	if err != nil {
		t.Fatal(err)
	}
	s := binary.LittleEndian.AppendUint32(nil, lz4legacy.Magic)
	raw := make([]byte, lz4legacy.ChunkSize)
	for i, c := range cs {
		if i < len(cs)-1 {
			s = append(s, k[off+c.Off-4:off+c.Off+c.Len]...)
			continue
		}
		m, err := lz4legacy.DecompressChunk(raw, k[off+c.Off:off+c.Off+c.Len])
		if err != nil {
			t.Fatal(err)
		}
		// One sequence of literals only: token 0xF0, the length in 255s, the bytes.
		b := []byte{0xF0}
		for r := m - 15; ; r -= 255 {
			if r < 255 {
				b = append(b, byte(r))
				break
			}
			b = append(b, 255)
		}
		b = append(b, raw[:m]...)
		s = binary.LittleEndian.AppendUint32(s, uint32(len(b)))
		s = append(s, b...)
	}
	out := append(bytes.Clone(k[:off]), s...)
	out = append(out, k[off+n:]...)
	binary.LittleEndian.PutUint32(out[0x24c:], uint32(len(s)+4))
	return out
}

// lz4Corrupt: every byte of a kernel unit's LZ4 fields corrupted (in the
// uncompressed body, the body then compressed again so that only the
// field is wrong) makes Apply fail with one line, never panic; so does a
// bundle that needs another liblz4, and a body cut inside the kernel.
func lz4Corrupt(t *testing.T, k55, k56, oldImg, bundle []byte) {
	h, err := wire.ReadHeader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	hlen := len(h.Marshal())
	zr, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	body, err := zr.DecodeAll(bundle[hlen:], nil)
	if err != nil {
		t.Fatal(err)
	}
	// The unit's fields: liblz4 version, old stream offset and length,
	// its uncompressed length, the new stream's offset and length.
	oOff, oLen, _ := lz4legacy.BzImageStream(k55)
	nOff, _, _ := lz4legacy.BzImageStream(k56)
	var fields []byte
	for _, v := range []int{lz4legacy.LibVersion(), oOff, oLen, 53243444, nOff, 53243444} {
		fields = binary.AppendUvarint(fields, uint64(v))
	}
	at := bytes.Index(body, fields)
	if at < 0 {
		t.Fatalf("the kernel unit's fields %x are not in the body", fields)
	}
	rebuild := func(body []byte) []byte {
		enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(wire.BodyWindow))
		if err != nil {
			t.Fatal(err)
		}
		return append(bytes.Clone(bundle[:hlen]), enc.EncodeAll(body, nil)...)
	}
	apply := func(name string, b []byte, want string) {
		t.Helper()
		var out bytes.Buffer
		_, err := wire.Apply(t.Context(), &out, bytes.NewReader(oldImg), int64(len(oldImg)), bytes.NewReader(b))
		if err == nil {
			t.Errorf("%s: Apply succeeded, want an error", name)
			return
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Apply error %q, want one line containing %q", name, err, want)
		}
	}
	for i := range len(fields) + 2 {
		b := bytes.Clone(body)
		b[at+i] ^= 0x40
		apply(fmt.Sprintf("field byte %d", i), rebuild(b), "")
	}
	// Another liblz4: its version number in place of this one's.
	other := binary.AppendUvarint(nil, uint64(lz4legacy.LibVersion()+1))
	if len(other) == len(binary.AppendUvarint(nil, uint64(lz4legacy.LibVersion()))) {
		b := bytes.Clone(body)
		copy(b[at:], other)
		apply("other liblz4", rebuild(b), "needs liblz4")
	}
	// A truncated body, inside the kernel's patch.
	apply("truncated", rebuild(body[:at+len(fields)+100_000]), "truncated")
}

package lz4legacy

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// TestDebianKernel: the payload of Debian's kernel (built with `lz4 -l
// -9`, liblz4 1.9.4) decompresses chunk by chunk and compresses back to
// the very same bytes: what the delta decoder relies on.
func TestDebianKernel(t *testing.T) {
	if !Available {
		t.Fatal("this build has no liblz4 (cgo off)")
	}
	k := testutil.DebianKernel(t, "6.1.0-56")
	off, n, err := BzImageStream(k)
	if err != nil {
		t.Fatal(err)
	}
	s := k[off : off+n]
	if got, want := int(binary.LittleEndian.Uint32(k[off+n:])), 53243444; got != want {
		t.Errorf("uncompressed size after the stream = %d, want %d", got, want)
	}
	cs, err := Chunks(s)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, ChunkSize)
	total := 0
	for i, c := range cs {
		m, err := DecompressChunk(raw, s[c.Off:c.Off+c.Len])
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if m != ChunkSize && i != len(cs)-1 {
			t.Errorf("chunk %d: %d bytes, want %d", i, m, ChunkSize)
		}
		total += m
		again, err := CompressChunk(nil, raw[:m])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, s[c.Off:c.Off+c.Len]) {
			t.Errorf("chunk %d: liblz4 %d at level %d gives %d bytes, the kernel has %d other ones", i, LibVersion(), Level, len(again), c.Len)
		}
	}
	t.Logf("%d chunks, %d bytes uncompressed, liblz4 %d", len(cs), total, LibVersion())
}

// TestRefuses: broken streams, blocks and kernels give one-line errors.
func TestRefuses(t *testing.T) {
	le := binary.LittleEndian
	stream := func(lens ...uint32) []byte {
		s := le.AppendUint32(nil, Magic)
		for _, n := range lens {
			s = le.AppendUint32(s, n)
			s = append(s, make([]byte, min(n, 64))...)
		}
		return s
	}
	for name, s := range map[string][]byte{
		"empty":          nil,
		"wrong magic":    append([]byte{1, 2, 3, 4}, stream(8)[4:]...),
		"no chunks":      stream(),
		"zero length":    stream(0),
		"past the end":   stream(1000),
		"truncated size": stream(8)[:len(stream(8))-9],
	} {
		if _, err := Chunks(s); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Chunks(%s) = %v, want a one-line error", name, err)
		}
	}
	if Available {
		dst := make([]byte, ChunkSize)
		for name, b := range map[string][]byte{
			"garbage":       bytes.Repeat([]byte{0xff}, 100),
			"offset zero":   {0x11, 'a', 0, 0},
			"match too far": {0x1f, 'a', 0xff, 0xff, 0xff, 0xff},
		} {
			if _, err := DecompressChunk(dst, b); err == nil {
				t.Errorf("DecompressChunk(%s) succeeded, want an error", name)
			}
		}
	}
	notLZ4 := make([]byte, 4096)
	copy(notLZ4[0x202:], "HdrS")
	le.PutUint16(notLZ4[0x206:], 0x20f)
	notLZ4[0x1f1] = 1
	le.PutUint32(notLZ4[0x248:], 100)
	le.PutUint32(notLZ4[0x24c:], 200)
	copy(notLZ4[1024+100:], []byte{0x1f, 0x8b}) // gzip
	for name, b := range map[string][]byte{"short": make([]byte, 100), "no HdrS": make([]byte, 4096), "gzip payload": notLZ4} {
		if _, _, err := BzImageStream(b); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("BzImageStream(%s) = %v, want a one-line error", name, err)
		}
	}
}

// Package lz4legacy is the codec of LZ4 legacy streams (`lz4 -l`), the
// format a Linux bzImage carries its kernel in when built with
// CONFIG_KERNEL_LZ4, as Debian's kernels are. A stream is the magic
// 0x184C2102, then chunks: a 32-bit little-endian compressed length and an
// LZ4 block that decompresses to ChunkSize bytes (the last chunk to at
// most that). The kernel build writes it with `lz4 -l -9`: liblz4's HC
// compressor at level 9 on each 8 MiB chunk.
//
// The delta decoder (format/delta) re-compresses a patched kernel with
// this package and must get the bzImage's bytes back, so the codec is part
// of the format, like format/blockcodec: liblz4 through cgo (Debian's
// liblz4-dev, linked statically into plumbd), the very library the
// kernel's lz4 tool is built on. Pure-Go LZ4 compressors choose other
// matches and give other bytes. Builds without cgo have no compressor
// (Available is false): the encoder then never asks for it, and the
// decoder refuses a bundle that does.
package lz4legacy

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic starts a legacy stream (little endian on the wire).
const Magic = 0x184C2102

// ChunkSize is the uncompressed size of every chunk but the last.
const ChunkSize = 8 << 20

// ChunkBound is the largest compressed chunk (LZ4_COMPRESSBOUND of
// ChunkSize): a reader refuses a longer one.
const ChunkBound = ChunkSize + ChunkSize/255 + 16

// Level is the HC level the kernel build uses (`lz4 -l -9`).
const Level = 9

// ErrUnavailable is returned by every function of a build without liblz4.
var ErrUnavailable = errors.New("lz4: this build has no liblz4 (built without cgo)")

// Chunk is one chunk of a stream: where its compressed bytes start
// (after its length field) and how many there are.
type Chunk struct {
	Off, Len int
}

// Chunks parses the chunk lengths of the legacy stream that fills s
// exactly (magic first) and returns where each chunk's block is. It does
// not decompress: a block is checked when it is decompressed.
func Chunks(s []byte) ([]Chunk, error) {
	if len(s) < 4 || binary.LittleEndian.Uint32(s) != Magic {
		return nil, errors.New("lz4 legacy stream: expected the magic 0x184C2102")
	}
	var cs []Chunk
	for p := 4; p < len(s); {
		if len(s)-p < 4 {
			return nil, fmt.Errorf("lz4 legacy stream: chunk length at %d: truncated", p)
		}
		n := int(binary.LittleEndian.Uint32(s[p:]))
		p += 4
		if n == 0 || n > ChunkBound || n > len(s)-p {
			return nil, fmt.Errorf("lz4 legacy stream: chunk at %d: length %d: expected 1..%d within the stream", p-4, n, min(ChunkBound, len(s)-p))
		}
		cs = append(cs, Chunk{Off: p, Len: n})
		p += n
	}
	if len(cs) == 0 {
		return nil, errors.New("lz4 legacy stream: no chunks")
	}
	return cs, nil
}

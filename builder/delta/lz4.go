package delta

import (
	"bytes"
	"encoding/binary"

	wire "github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/format/lz4legacy"
)

// lz4Fields are an inner LZ4 unit's fields (format/delta/FORMAT.md).
type lz4Fields struct {
	version                int // liblz4's, as the check below ran with it
	oldOff, oldLen, oldRaw int // the old stream in the old content
	newOff, newRaw         int // the new stream's stretch in the expanded new content
}

type lz4Pair struct {
	old, new []byte // both contents with their stream decompressed
	fields   lz4Fields
}

// lz4Kernel returns the old and new contents with their kernel payloads
// decompressed when both are bzImages whose payload is an LZ4 legacy
// stream and liblz4 at the kernel build's level gives the new payload back
// byte for byte (Debian's kernels: `lz4 -l -9`, liblz4 1.9.4). Anything
// else (another compressor, another liblz4, a build without cgo) is not
// reported, and the file is patched as stored.
func lz4Kernel(old, content []byte) (lz4Pair, bool) {
	if !lz4legacy.Available {
		return lz4Pair{}, false
	}
	oOff, oLen, err := lz4legacy.BzImageStream(old)
	if err != nil {
		return lz4Pair{}, false
	}
	nOff, nLen, err := lz4legacy.BzImageStream(content)
	if err != nil {
		return lz4Pair{}, false
	}
	oRaw, ok := lz4Expand(old[oOff : oOff+oLen])
	if !ok {
		return lz4Pair{}, false
	}
	nRaw, ok := lz4Expand(content[nOff : nOff+nLen])
	if !ok {
		return lz4Pair{}, false
	}
	// The decoder's side: compress the new payload back, chunk by chunk.
	again := binary.LittleEndian.AppendUint32(make([]byte, 0, nLen), lz4legacy.Magic)
	comp := make([]byte, lz4legacy.ChunkBound)
	for p := nRaw; len(p) > 0; {
		n := min(len(p), lz4legacy.ChunkSize)
		b, err := lz4legacy.CompressChunk(comp, p[:n])
		if err != nil {
			return lz4Pair{}, false
		}
		again = binary.LittleEndian.AppendUint32(again, uint32(len(b)))
		again = append(again, b...)
		p = p[n:]
	}
	if !bytes.Equal(again, content[nOff:nOff+nLen]) {
		return lz4Pair{}, false
	}
	return lz4Pair{
		old: splice(old, oOff, oLen, oRaw),
		new: splice(content, nOff, nLen, nRaw),
		fields: lz4Fields{version: lz4legacy.LibVersion(), oldOff: oOff, oldLen: oLen, oldRaw: len(oRaw),
			newOff: nOff, newRaw: len(nRaw)},
	}, true
}

// lz4Expand decompresses a legacy stream whose chunks are all ChunkSize
// but the last (as the lz4 tool writes them), within wire.MaxLZ4Raw.
func lz4Expand(s []byte) ([]byte, bool) {
	cs, err := lz4legacy.Chunks(s)
	if err != nil || len(cs) > wire.MaxLZ4Raw/lz4legacy.ChunkSize {
		return nil, false
	}
	out := make([]byte, len(cs)*lz4legacy.ChunkSize)
	total := 0
	for i, c := range cs {
		n, err := lz4legacy.DecompressChunk(out[total:total+lz4legacy.ChunkSize], s[c.Off:c.Off+c.Len])
		if err != nil || n != lz4legacy.ChunkSize && i != len(cs)-1 {
			return nil, false
		}
		total += n
	}
	return out[:total], true
}

// splice returns b with b[off:off+n] replaced by r.
func splice(b []byte, off, n int, r []byte) []byte {
	out := make([]byte, 0, len(b)-n+len(r))
	out = append(out, b[:off]...)
	out = append(out, r...)
	return append(out, b[off+n:]...)
}

package delta

import (
	"encoding/binary"
	"fmt"
	"runtime/debug"

	"github.com/plumb-os/plumb/format/lz4legacy"
)

// An inner LZ4 unit (FORMAT.md): the content is a file holding one LZ4
// legacy stream (a bzImage's kernel payload); the patch makes the file
// with the stream decompressed, and the decoder compresses that stretch
// back, chunk by chunk, with liblz4 at the kernel build's level. Old
// content is read a chunk at a time: memory does not depend on the
// kernel's size (MaxMemory).

// lz4Unit reads an inner LZ4 unit's fields and runs its patch into f.
func (a *applier) lz4Unit(oldLen, contentLen uint64, f *blockFiller) error {
	in := a.in
	ver, err := in.uvarint("unit liblz4 version", 1<<31)
	if err != nil {
		return err
	}
	if !lz4legacy.Available || int(ver) != lz4legacy.LibVersion() {
		have := "none"
		if lz4legacy.Available {
			have = fmt.Sprint(lz4legacy.LibVersion())
		}
		return fmt.Errorf("delta: bundle needs liblz4 %d to re-compress a kernel, this build has %s", ver, have)
	}
	a.st.LZ4Units++
	sOff, err := in.uvarint("unit old LZ4 stream offset", oldLen)
	if err != nil {
		return err
	}
	sLen, err := in.uvarint("unit old LZ4 stream length", oldLen-sOff)
	if err != nil {
		return err
	}
	sRaw, err := in.uvarint("unit old LZ4 stream uncompressed length", MaxLZ4Raw)
	if err != nil {
		return err
	}
	newOff, err := in.uvarint("unit new LZ4 stream offset", contentLen)
	if err != nil {
		return err
	}
	newRaw, err := in.uvarint("unit new LZ4 stream uncompressed length", MaxLZ4Raw)
	if err != nil {
		return err
	}
	newLen, err := in.uvarint("unit new expanded length", contentLen+newRaw)
	if err != nil {
		return err
	}
	if newRaw == 0 || sRaw == 0 || newOff+newRaw > newLen {
		return fmt.Errorf("delta bundle: unit LZ4 stream: %d bytes at %d of %d: expected a non-empty stretch within the content", newRaw, newOff, newLen)
	}

	// The old stream's chunks: where each one's stored bytes are.
	a.lz4Chunks = a.lz4Chunks[:0]
	var hdr [4]byte
	if err := a.readOld(hdr[:], sOff, sLen); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(hdr[:]) != lz4legacy.Magic {
		return fmt.Errorf("delta: unit old content: expected an LZ4 legacy stream at %d (wrong base?)", sOff)
	}
	want := (sRaw + lz4legacy.ChunkSize - 1) / lz4legacy.ChunkSize
	for p := uint64(4); p < sLen; {
		if err := a.readOld(hdr[:], sOff+p, sLen-p); err != nil {
			return err
		}
		n := uint64(binary.LittleEndian.Uint32(hdr[:]))
		p += 4
		if n == 0 || n > lz4legacy.ChunkBound || n > sLen-p || uint64(len(a.lz4Chunks)) >= want {
			return fmt.Errorf("delta: unit old content: LZ4 chunk %d: expected %d chunks of at most %d bytes within %d (wrong base?)", len(a.lz4Chunks), want, lz4legacy.ChunkBound, sLen)
		}
		a.lz4Chunks = append(a.lz4Chunks, lz4legacy.Chunk{Off: int(sOff + p), Len: int(n)})
		p += n
	}
	if uint64(len(a.lz4Chunks)) != want {
		return fmt.Errorf("delta: unit old content: expected %d LZ4 chunks, got %d (wrong base?)", want, len(a.lz4Chunks))
	}
	// A zstd unit's buffers are gone by now (dropInner): MaxMemory does
	// not hold both kinds together.
	a.lz4Held = [2]int{-1, -1}
	for i := range a.lz4Old {
		a.lz4Old[i] = growCap(a.lz4Old[i], lz4Slot)
	}
	a.lz4New = growCap(a.lz4New, lz4legacy.ChunkSize)[:0]
	a.scratch = grow(a.scratch, 64<<10)

	// Old positions of the expanded content: before the stream, in it
	// (decompressed), after it.
	addOld := func(dst []byte, off uint64) error {
		for len(dst) > 0 {
			var n int
			switch {
			case off < sOff:
				n = int(min(uint64(len(dst)), sOff-off))
				if err := a.addOld(dst[:n], off); err != nil {
					return err
				}
			case off < sOff+sRaw:
				k := (off - sOff) / lz4legacy.ChunkSize
				raw, err := a.oldLZ4Chunk(int(k), min(lz4legacy.ChunkSize, sRaw-k*lz4legacy.ChunkSize))
				if err != nil {
					return err
				}
				at := off - sOff - k*lz4legacy.ChunkSize
				n = min(len(dst), len(raw)-int(at))
				addBytes(dst[:n], raw[at:at+uint64(n)])
			default:
				n = len(dst)
				if err := a.addOld(dst, off-sRaw+sLen); err != nil {
					return err
				}
			}
			dst = dst[n:]
			off += uint64(n)
		}
		return nil
	}
	w := &lz4Writer{f: f, off: newOff, raw: newRaw, buf: a.lz4New, comp: a.lz4Spare}
	p := patch{
		next:   func() ([]byte, error) { return a.scratch, nil },
		commit: func(n int) error { return w.write(a.scratch[:n]) },
		addOld: addOld,
		oldLen: oldLen - sLen + sRaw, total: newLen, ctrls: a.ctrls[:0], diff: &a.diff,
	}
	return p.run(in)
}

// readOld reads old content bytes at off into dst (at most max of them).
func (a *applier) readOld(dst []byte, off, max uint64) error {
	if uint64(len(dst)) > max {
		return fmt.Errorf("delta: unit old content: %d bytes at %d: past the LZ4 stream (wrong base?)", len(dst), off)
	}
	clear(dst)
	return a.addOld(dst, off)
}

// oldLZ4Chunk returns the old stream's chunk k decompressed (rawLen
// bytes). Two chunks are kept: a patch reads the old kernel in order, but
// a kernel that moved by a few bytes reads across each chunk boundary
// back and forth (measured on Debian's 6.1.0-55 -> -56: 2,498
// decompressions with one kept, 9 with two). A chunk is decompressed in
// place: its stored bytes are read to the end of its slot (lz4Slot).
func (a *applier) oldLZ4Chunk(k int, rawLen uint64) ([]byte, error) {
	for i := range a.lz4Old {
		if a.lz4Held[i] == k {
			a.lz4Last = i
			return a.lz4Old[i][:rawLen], nil
		}
	}
	i := 1 - a.lz4Last // the one not used last
	c := a.lz4Chunks[k]
	slot := a.lz4Old[i]
	src := slot[len(slot)-c.Len:]
	a.lz4Held[i] = -1
	if err := a.readOld(src, uint64(c.Off), uint64(c.Len)); err != nil {
		return nil, err
	}
	n, err := lz4legacy.DecompressChunk(slot, src)
	if err != nil || uint64(n) != rawLen {
		return nil, fmt.Errorf("delta: unit old content: LZ4 chunk %d: expected %d bytes (wrong base?)", k, rawLen)
	}
	a.lz4Held[i], a.lz4Last = k, i
	a.st.LZ4Chunks++
	return slot[:rawLen], nil
}

// lz4Spare gives the slot of the old chunk not used last as scratch for a
// new chunk's compressed bytes (that chunk is decompressed again if the
// patch needs it: at most once per new chunk).
func (a *applier) lz4Spare() []byte {
	i := 1 - a.lz4Last
	a.lz4Held[i] = -1
	return a.lz4Old[i]
}

// lz4Writer turns the expanded new content into the content: bytes
// before and after [off, off+raw) pass through, the stretch becomes an LZ4
// legacy stream (magic, then each chunk's length and block).
type lz4Writer struct {
	f        *blockFiller
	pos      uint64
	off, raw uint64
	buf      []byte        // the chunk being filled
	comp     func() []byte // room for its compressed form
}

func (w *lz4Writer) write(p []byte) error {
	for len(p) > 0 {
		var n int
		switch {
		case w.pos < w.off:
			n = int(min(uint64(len(p)), w.off-w.pos))
			if _, err := w.f.Write(p[:n]); err != nil {
				return err
			}
		case w.pos < w.off+w.raw:
			if w.pos == w.off {
				if _, err := w.f.Write(binary.LittleEndian.AppendUint32(nil, lz4legacy.Magic)); err != nil {
					return err
				}
			}
			n = int(min(uint64(len(p)), uint64(lz4legacy.ChunkSize-len(w.buf)), w.off+w.raw-w.pos))
			w.buf = append(w.buf, p[:n]...)
			if len(w.buf) == lz4legacy.ChunkSize || w.pos+uint64(n) == w.off+w.raw {
				b, err := lz4legacy.CompressChunk(w.comp(), w.buf)
				if err != nil {
					return fmt.Errorf("delta: re-compressing the kernel: %w", err)
				}
				if _, err := w.f.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(b)))); err != nil {
					return err
				}
				if _, err := w.f.Write(b); err != nil {
					return err
				}
				w.buf = w.buf[:0]
			}
		default:
			n = len(p)
			if _, err := w.f.Write(p); err != nil {
				return err
			}
		}
		w.pos += uint64(n)
		p = p[n:]
	}
	return nil
}

// lz4Slot holds an old chunk decompressed in place: its stored bytes (at
// most ChunkBound) at the end, with liblz4's in-place margin
// (LZ4_DECOMPRESS_INPLACE_MARGIN: a 256th of them plus 32 bytes).
const lz4Slot = lz4legacy.ChunkBound + lz4legacy.ChunkBound>>8 + 32

func growCap(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// dropLZ4 lets go of an LZ4 unit's buffers (about 24 MiB: two 8 MiB old
// chunks and a new one) once the kernel is written, collects them and
// gives their pages back to the kernel at once (debug.FreeOSMemory): the
// blocks that follow would otherwise grow the heap beside them before the
// next collection (MaxMemory counts them as not held together), and freed
// pages stay resident until the runtime's background scavenger gets to
// them, so a later buffer could land on fresh pages beside them. With
// runtime.GC alone the peak RSS of one apply varied by 8 MiB from run to
// run (kernel pair 53-62 MiB, Debian pair 58.6-67.9 MiB); with
// FreeOSMemory here and in dropInner it is 51.0-51.3 and 55.9-56.3 MiB
// (bench/delta/RESULTS.md, Session 6). A bundle has a kernel or two.
func (a *applier) dropLZ4() {
	a.lz4New, a.lz4Old = nil, [2][]byte{}
	debug.FreeOSMemory()
}

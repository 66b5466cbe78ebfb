// Package delta owns the delta bundle format and its decoder: a bundle
// turns one Plumb root image (a squashfs written by builder/squashfs) into
// the next one. The spec is FORMAT.md beside this file; the encoder
// (plumb's side) is builder/delta, which writes what this package reads.
//
// Apply checks the old image's sha256 against the bundle before it writes
// anything, writes the new image sequentially, and checks the result's size
// and sha256 at the end. Its memory is bounded by a constant (see MaxMemory),
// whatever the image size. Blocks the bundle asks to re-compress are
// re-compressed with format/blockcodec, the builder's own block codec, so
// the result is the builder's image byte for byte. Apply is safe for
// concurrent use on different inputs.
package delta

import (
	"errors"

	"github.com/plumb-os/plumb/format/lz4legacy"
)

// Version is the bundle format version this package writes and reads.
const Version = 2

// Limits of the format: a decoder refuses larger values (see FORMAT.md).
const (
	MaxBlock    = 1 << 20 // the largest squashfs block size
	MaxSources  = 8192    // sources of one UNIT
	MaxBlocks   = 1 << 15 // blocks of one UNIT (4 GiB of content at 128 KiB)
	BodyWindow  = 8 << 20 // window of the body's zstd stream
	cacheBytes  = 4 << 20 // decompressed old blocks the decoder keeps (at least 4)
	pipeDepth   = 8       // blocks in flight between decoding and writing
	MaxSegCtrls = 4096    // patch instructions in a segment
	MaxSegDiff  = 1 << 20 // difference bytes in a segment
)

// MaxInner bounds an inner zstd stream (a compressed initramfs) and its
// compressed form: the decoder holds both (see FORMAT.md).
const MaxInner = 8 << 20

// Inner compression of a UNIT's content.
const (
	InnerNone = 0 // the patch makes the content
	InnerZstd = 1 // the patch makes a stream; NewInnerEncoder compresses it into the content
	InnerLZ4  = 2 // the patch makes the content with its LZ4 legacy stream decompressed (a bzImage's kernel)
)

// MaxLZ4Raw bounds the uncompressed length of an inner LZ4 unit's stream
// (a Debian cloud kernel is 53 MB): the decoder holds one 8 MiB chunk of
// it at a time, old and new, so memory does not grow with it; the bound
// keeps a corrupt bundle from making it compress without end.
const MaxLZ4Raw = 256 << 20

// MaxMemory is an upper bound, in bytes, of the buffers Apply allocates,
// for the largest block size (1 MiB; a 128 KiB-block image needs far
// less): the body's zstd window and its decoder buffers (BodyWindow +
// 2 MiB), a patch segment's instructions and difference bytes
// (MaxSegCtrls x 24 + MaxSegDiff), cacheBytes of decompressed old blocks, pipeDepth blocks in flight
// (raw and compressed), one compression buffer per worker (at most 4), a
// UNIT's block list (MaxBlocks x 32 bytes) and sources (MaxSources x 48
// bytes), a 256 KiB copy buffer, and innerMem for inner units.
// It does not depend on the image size: about 62 MiB, or 48 MiB for
// 128 KiB blocks. Measured peak RSS is in bench/delta/RESULTS.md.
const MaxMemory = BodyWindow + 2<<20 + MaxSegCtrls*24 + MaxSegDiff + cacheBytes + pipeDepth*(2*MaxBlock+MaxBlock/64) +
	MaxBlocks*32 + MaxSources*48 + 256<<10 + innerMem

// innerMem bounds the buffers of inner units, of one kind at a time (the
// decoder drops one kind's before it allocates the other's): for zstd,
// the old stream as stored and uncompressed (2 x MaxInner) and the inner
// encoder (innerEncMem); for LZ4 (a kernel, whatever its size up to
// MaxLZ4Raw), two old chunks, each decompressed in place (lz4Slot: 8 MiB
// and liblz4's margin), the new chunk (8 MiB) and liblz4's HC state
// (lz4StateMem, C memory, while a chunk is compressed).
const innerMem = max(2*MaxInner+innerEncMem, 2*lz4Slot+lz4legacy.ChunkSize+lz4StateMem)

// innerEncMem is what NewInnerEncoder allocates (measured: 12.4 MiB for a
// 6 MiB stream, mostly its 8 MiB window of history and its match tables;
// 20.5 MiB before WithLowerEncoderMem).
const innerEncMem = 13 << 20

// lz4StateMem is liblz4 1.9.4's LZ4_streamHC_t (LZ4_STREAMHCSIZE, 262,200
// bytes), which LZ4_compress_HC allocates for each chunk.
const lz4StateMem = 262200

// Stats describes a bundle, from either side.
type Stats struct {
	BundleBytes  int64 // bytes of the bundle
	TargetBytes  int64 // bytes of the new image
	CopyBytes    int64 // image bytes copied from the old image
	LiteralBytes int64 // image bytes shipped as they are (before the outer zstd)
	UnitBytes    int64 // image bytes re-compressed from patched content
	Units        int   // patched contents (files or fragment blocks)
	Recompressed int   // blocks re-compressed by the decoder
	LiteralBlks  int   // blocks in units shipped as literal (re-compression would differ)
	MatchedFiles int   // changed files patched against an old file
	LZ4Units     int   // units patched with their LZ4 stream decompressed (kernels)
	LZ4Chunks    int   // old LZ4 chunks the decoder decompressed (once each when the patch reads the old kernel in order)
}

// Header is the cheap-to-read start of a bundle.
type Header struct {
	Version      int
	BaseSize     int64
	BaseSHA256   [32]byte
	TargetSize   int64
	TargetSHA256 [32]byte
	// Compressor names the zstd implementation the decoder must have to
	// re-compress blocks ("" when the bundle needs none), with the level
	// and block size it must use.
	Compressor string
	Level      int
	BlockSize  int
}

// ErrWrongBase is returned by Apply when the old image is not the bundle's base.
var ErrWrongBase = errors.New("the old image is not this bundle's base")

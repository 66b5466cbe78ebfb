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

import "errors"

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
)

// MaxMemory is an upper bound, in bytes, of the buffers Apply allocates,
// for the largest block size (1 MiB; a 128 KiB-block image needs far
// less): the body's zstd window and its decoder buffers (BodyWindow +
// 2 MiB), a patch segment's instructions and difference bytes
// (MaxSegCtrls x 24 + MaxSegDiff), cacheBytes of decompressed old blocks, pipeDepth blocks in flight
// (raw and compressed), one compression buffer per worker (at most 4), a
// UNIT's block list (MaxBlocks x 32 bytes) and sources (MaxSources x 48
// bytes), a 256 KiB copy buffer, and for inner zstd units the old stream
// compressed and not (2 x MaxInner) and the inner encoder (innerEncMem).
// It does not depend on the image size: about 69 MiB, or 51 MiB for
// 128 KiB blocks. Measured peak RSS is in bench/delta/RESULTS.md.
const MaxMemory = BodyWindow + 2<<20 + MaxSegCtrls*24 + MaxSegDiff + cacheBytes + pipeDepth*(2*MaxBlock+MaxBlock/64) +
	MaxBlocks*32 + MaxSources*48 + 256<<10 + 2*MaxInner + innerEncMem

// innerEncMem is what NewInnerEncoder allocates (measured: 20 MiB, mostly
// its 8 MiB window twice and its match tables).
const innerEncMem = 20 << 20

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

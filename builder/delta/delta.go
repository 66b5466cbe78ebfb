// Package delta owns the delta bundle format: a bundle turns one Plumb
// root image (a squashfs written by builder/squashfs) into the next one.
// The package holds the encoder (Encode, run by `plumb`), the decoder
// (Apply, run by `plumbd` against its running slot) and the spec,
// FORMAT.md beside this file.
//
// Encode reads both images at random, matches the new image's files to the
// old one's (by path, by path with version numbers normalised, by base
// name), and describes the new image as a stream of operations: copy a
// range of the old image, literal bytes, or a file's new content as a zstd
// patch against the old content which the decoder re-compresses into
// blocks exactly as the builder did. The encoder checks every re-compressed
// block against the real one and ships a block as literal bytes when the
// decoder's compressor would not reproduce it.
//
// Apply checks the old image's sha256 against the bundle before it writes
// anything, writes the new image sequentially, and checks the result's size
// and sha256 at the end. Its memory is bounded by a constant (see MaxMemory),
// whatever the image size. Encode and Apply are safe for concurrent use on
// different inputs.
package delta

import (
	"errors"
	"log/slog"
)

// Version is the bundle format version this package writes and reads.
const Version = 2

// Limits of the format: a decoder refuses larger values (see FORMAT.md).
const (
	maxBlock    = 1 << 20 // the largest squashfs block size
	maxSources  = 8192    // sources of one UNIT
	maxBlocks   = 1 << 15 // blocks of one UNIT (4 GiB of content at 128 KiB)
	bodyWindow  = 8 << 20 // window of the body's zstd stream
	cacheBytes  = 4 << 20 // decompressed old blocks the decoder keeps (at least 4)
	pipeDepth   = 8       // blocks in flight between decoding and writing
	maxSegCtrls = 4096    // patch instructions in a segment
	maxSegDiff  = 1 << 20 // difference bytes in a segment
)

// maxInner bounds an inner zstd stream (a compressed initramfs) and its
// compressed form: the decoder holds both (see FORMAT.md).
const maxInner = 8 << 20

// Inner compression of a UNIT's content.
const (
	innerNone = 0 // the patch makes the content
	innerZstd = 1 // the patch makes a stream; newInnerEncoder compresses it into the content
)

// maxOld bounds the old content the encoder patches against (its suffix
// array costs 5 bytes a byte); the decoder reads old content a block at a
// time and has no such bound.
const maxOld = 256 << 20

// MaxMemory is an upper bound, in bytes, of the buffers Apply allocates,
// for the largest block size (1 MiB; a 128 KiB-block image needs far
// less): the body's zstd window and its decoder buffers (bodyWindow +
// 2 MiB), a patch segment's instructions and difference bytes
// (maxSegCtrls x 24 + maxSegDiff), cacheBytes of decompressed old blocks, pipeDepth blocks in flight
// (raw and compressed), one compression buffer per worker (at most 4), a
// UNIT's block list (maxBlocks x 32 bytes) and sources (maxSources x 48
// bytes), a 256 KiB copy buffer, and for inner zstd units the old stream
// compressed and not (2 x maxInner) and the inner encoder (innerEncMem).
// It does not depend on the image size: about 69 MiB, or 51 MiB for
// 128 KiB blocks. Measured peak RSS is in bench/delta/RESULTS.md.
const MaxMemory = bodyWindow + 2<<20 + maxSegCtrls*24 + maxSegDiff + cacheBytes + pipeDepth*(2*maxBlock+maxBlock/64) +
	maxBlocks*32 + maxSources*48 + 256<<10 + 2*maxInner + innerEncMem

// innerEncMem is what newInnerEncoder allocates (measured: 20 MiB, mostly
// its 8 MiB window twice and its match tables).
const innerEncMem = 20 << 20

// Options tune Encode. The zero value is valid.
type Options struct {
	// NoRecompress makes a bundle that any decoder can apply, whatever
	// zstd it was built with: changed blocks travel as literal bytes.
	NoRecompress bool
	// Level is the zstd level of the bundle body: 1..4 select klauspost's
	// levels (fastest, default, better, best); 0 means the smallest body:
	// libzstd level 19 in cgo builds, klauspost's best otherwise.
	Level int
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

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

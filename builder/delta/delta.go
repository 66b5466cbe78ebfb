// Package delta is the delta bundle encoder (Encode, run by `plumb`): a
// bundle turns one Plumb root image (a squashfs written by
// builder/squashfs) into the next one. The format, its spec and the
// decoder that plumbd runs are format/delta.
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
// Encode is safe for concurrent use on different inputs.
package delta

import "log/slog"

// maxOld bounds the old content the encoder patches against (its suffix
// array costs 5 bytes a byte); the decoder reads old content a block at a
// time and has no such bound.
const maxOld = 256 << 20

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

package delta

// The decoder's view of a UNIT's records (FORMAT.md). builder/delta's
// encoder keeps its own in-memory forms and writes the same fields in the
// same order.

// source is a piece of old content: a stored block of the old image,
// decompressed, then sliced.
type source struct {
	off, stored   uint64
	kind          byte
	rawLen        uint64
	sliceOff, len uint64
}

// ublock is one block of a UNIT's output.
type ublock struct {
	mode    byte
	rawLen  uint64
	copyOff uint64 // BlkCopy
	copyLen uint64
}

// ctrl is one patch instruction: add bytes of difference, extra literal
// bytes, then seek in the old content.
type ctrl struct {
	add, extra int
	seek       int64
}

//go:build !cgo

package lz4legacy

// Available reports whether this build has liblz4.
const Available = false

// LibVersion is 0: this build has no liblz4.
func LibVersion() int { return 0 }

// CompressChunk fails: this build has no liblz4.
func CompressChunk(dst, src []byte) ([]byte, error) { return nil, ErrUnavailable }

// DecompressChunk fails: this build has no liblz4.
func DecompressChunk(dst, src []byte) (int, error) { return 0, ErrUnavailable }

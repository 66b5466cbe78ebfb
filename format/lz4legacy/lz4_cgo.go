//go:build cgo

package lz4legacy

// Debian's liblz4-dev (1.9.4 on Debian 12): plumbd's -static link takes
// its static archive, plumb the shared library.

// #cgo LDFLAGS: -llz4
// #include <lz4.h>
// #include <lz4hc.h>
import "C"

import (
	"fmt"
	"unsafe"
)

// Available reports whether this build has liblz4.
const Available = true

// LibVersion is liblz4's version number (major*10000 + minor*100 +
// release: 10904 for 1.9.4), as the library reports it at run time. A
// bundle that needs a kernel re-compressed names the version its encoder
// checked the bytes with; a decoder with another one refuses it.
func LibVersion() int { return int(C.LZ4_versionNumber()) }

// CompressChunk compresses one chunk (1..ChunkSize bytes) as `lz4 -l -9`
// does (LZ4_compress_HC at Level) and returns the block, in dst's memory
// when its capacity is at least ChunkBound.
func CompressChunk(dst, src []byte) ([]byte, error) {
	if len(src) == 0 || len(src) > ChunkSize {
		return nil, fmt.Errorf("lz4: chunk of %d bytes: expected 1..%d", len(src), ChunkSize)
	}
	if cap(dst) < ChunkBound {
		dst = make([]byte, ChunkBound)
	}
	dst = dst[:ChunkBound]
	n := C.LZ4_compress_HC((*C.char)(unsafe.Pointer(&src[0])), (*C.char)(unsafe.Pointer(&dst[0])),
		C.int(len(src)), C.int(len(dst)), C.int(Level))
	if n <= 0 {
		return nil, fmt.Errorf("lz4: compressing a chunk of %d bytes failed", len(src))
	}
	return dst[:n], nil
}

// DecompressChunk decompresses one block into dst (at most ChunkSize
// bytes; liblz4's safe decoder: it never reads or writes out of bounds on
// corrupt input) and returns the number of bytes it wrote.
func DecompressChunk(dst, src []byte) (int, error) {
	if len(src) == 0 || len(dst) == 0 {
		return 0, fmt.Errorf("lz4: empty chunk")
	}
	n := C.LZ4_decompress_safe((*C.char)(unsafe.Pointer(&src[0])), (*C.char)(unsafe.Pointer(&dst[0])),
		C.int(len(src)), C.int(min(len(dst), ChunkSize)))
	if n <= 0 {
		return 0, fmt.Errorf("lz4: corrupt chunk of %d bytes", len(src))
	}
	return int(n), nil
}

package squashfs

// compressor turns one block into one zstd frame. Each goroutine owns its
// own. Two implementations exist: pure Go (klauspost/compress, the
// default) and libzstd through cgo (build tag zstd_cgo), which compresses
// about 10% smaller at level 15 because klauspost stops at roughly zstd
// level 11. Images are deterministic within one implementation; the two
// give different bytes.
type compressor interface {
	// compress returns src compressed; the result may reuse dst's memory.
	compress(dst, src []byte) ([]byte, error)
	close()
}

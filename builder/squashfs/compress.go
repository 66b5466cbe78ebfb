package squashfs

// compressor turns one block into one zstd frame. Each goroutine owns its
// own. Two implementations exist: libzstd through cgo (the default when
// cgo is on) and pure Go (klauspost/compress: CGO_ENABLED=0 or build tag
// purego_zstd), which compresses about 10% larger at level 15 because
// klauspost stops at roughly zstd level 11. Images are deterministic within one implementation; the two
// give different bytes.
type compressor interface {
	// compress returns src compressed; the result may reuse dst's memory.
	compress(dst, src []byte) ([]byte, error)
	close()
}

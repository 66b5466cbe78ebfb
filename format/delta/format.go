package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var magic = [8]byte{'P', 'L', 'U', 'M', 'B', 'D', 'L', 'T'}

// Operations of the body stream (FORMAT.md), exported for the encoder.
const (
	OpEnd  = 0
	OpCopy = 1
	OpData = 2
	OpUnit = 3
)

// Block modes inside a UNIT.
const (
	BlkFile     = 0 // re-compress as a file block (zeros -> sparse)
	BlkLiteral  = 1 // stored bytes follow
	BlkFragment = 2 // re-compress as a fragment block (no sparse)
	BlkCopy     = 3 // stored bytes are in the old image
)

// Kinds of a UNIT source.
const (
	SrcZstd   = 0 // a zstd frame in the old image
	SrcRaw    = 1 // bytes stored as they are
	SrcSparse = 2 // zeros, nothing stored
)

const fixedHeader = 8 + 2 + 2 + 8 + 32 + 8 + 32 + 1 + 4 + 1

// Marshal returns the header as a bundle starts with it (FORMAT.md).
func (h *Header) Marshal() []byte {
	b := make([]byte, 0, fixedHeader+len(h.Compressor)+4)
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(h.Version))
	b = binary.LittleEndian.AppendUint16(b, 0) // flags
	b = binary.LittleEndian.AppendUint64(b, uint64(h.BaseSize))
	b = append(b, h.BaseSHA256[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.TargetSize))
	b = append(b, h.TargetSHA256[:]...)
	b = append(b, byte(h.Level))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.BlockSize))
	b = append(b, byte(len(h.Compressor)))
	b = append(b, h.Compressor...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// ReadHeader reads and checks a bundle's header, leaving r at the body.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	b := make([]byte, fixedHeader, fixedHeader+255+4)
	if _, err := io.ReadFull(r, b); err != nil {
		return h, fmt.Errorf("delta bundle header: %w", truncated(err))
	}
	if [8]byte(b[:8]) != magic {
		return h, fmt.Errorf("delta bundle header: magic: expected %q, got %q", magic[:], b[:8])
	}
	le := binary.LittleEndian
	h.Version = int(le.Uint16(b[8:]))
	if h.Version != Version {
		return h, fmt.Errorf("delta bundle header: version: expected %d, got %d", Version, h.Version)
	}
	if f := le.Uint16(b[10:]); f != 0 {
		return h, fmt.Errorf("delta bundle header: flags: expected 0, got 0x%x", f)
	}
	h.BaseSize = int64(le.Uint64(b[12:]))
	copy(h.BaseSHA256[:], b[20:52])
	h.TargetSize = int64(le.Uint64(b[52:]))
	copy(h.TargetSHA256[:], b[60:92])
	h.Level = int(b[92])
	h.BlockSize = int(le.Uint32(b[93:]))
	n := int(b[97])
	b = b[:fixedHeader+n+4]
	if _, err := io.ReadFull(r, b[fixedHeader:]); err != nil {
		return h, fmt.Errorf("delta bundle header: %w", truncated(err))
	}
	h.Compressor = string(b[fixedHeader : fixedHeader+n])
	if got, want := le.Uint32(b[fixedHeader+n:]), crc32.ChecksumIEEE(b[:fixedHeader+n]); got != want {
		return h, fmt.Errorf("delta bundle header: checksum: expected 0x%08x, got 0x%08x (corrupt header)", want, got)
	}
	switch {
	case h.BaseSize < 0 || h.TargetSize < 0:
		return h, fmt.Errorf("delta bundle header: sizes: expected positive, got base %d, target %d", h.BaseSize, h.TargetSize)
	case h.Compressor != "" && (h.Level < 1 || h.Level > 22):
		return h, fmt.Errorf("delta bundle header: level: expected 1..22, got %d", h.Level)
	case h.Compressor != "" && (h.BlockSize < 4096 || h.BlockSize > MaxBlock):
		return h, fmt.Errorf("delta bundle header: block size: expected 4096..%d, got %d", MaxBlock, h.BlockSize)
	}
	return h, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated bundle")
	}
	return err
}

// opReader reads the body's operations with bounds checks.
type opReader struct {
	r *bufio.Reader
}

func (o *opReader) uvarint(what string, max uint64) (uint64, error) {
	v, err := binary.ReadUvarint(o.r)
	if err != nil {
		return 0, fmt.Errorf("delta bundle: reading %s: %w", what, truncated(err))
	}
	if v > max {
		return 0, fmt.Errorf("delta bundle: %s: expected at most %d, got %d", what, max, v)
	}
	return v, nil
}

func (o *opReader) byte(what string) (byte, error) {
	c, err := o.r.ReadByte()
	if err != nil {
		return 0, fmt.Errorf("delta bundle: reading %s: %w", what, truncated(err))
	}
	return c, nil
}

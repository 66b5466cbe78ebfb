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

// Operations of the body stream.
const (
	opEnd  = 0
	opCopy = 1
	opData = 2
	opUnit = 3
)

// Block modes inside a UNIT.
const (
	blkFile     = 0 // re-compress as a file block (zeros -> sparse)
	blkLiteral  = 1 // stored bytes follow
	blkFragment = 2 // re-compress as a fragment block (no sparse)
	blkCopy     = 3 // stored bytes are in the old image
)

// Kinds of a UNIT source.
const (
	srcZstd   = 0 // a zstd frame in the old image
	srcRaw    = 1 // bytes stored as they are
	srcSparse = 2 // zeros, nothing stored
)

const fixedHeader = 8 + 2 + 2 + 8 + 32 + 8 + 32 + 1 + 4 + 1

func (h *Header) marshal() []byte {
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
	case h.Compressor != "" && (h.BlockSize < 4096 || h.BlockSize > maxBlock):
		return h, fmt.Errorf("delta bundle header: block size: expected 4096..%d, got %d", maxBlock, h.BlockSize)
	}
	return h, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated bundle")
	}
	return err
}

// opWriter writes the body's operations, merging adjacent copies and
// adjacent literal ranges.
type opWriter struct {
	w       *bufio.Writer
	copyOff int64
	copyLen int64
	tmp     []byte
}

func (o *opWriter) uvarint(v uint64) error {
	o.tmp = binary.AppendUvarint(o.tmp[:0], v)
	_, err := o.w.Write(o.tmp)
	return err
}

func (o *opWriter) flushCopy() error {
	if o.copyLen == 0 {
		return nil
	}
	if err := o.w.WriteByte(opCopy); err != nil {
		return err
	}
	if err := o.uvarint(uint64(o.copyOff)); err != nil {
		return err
	}
	err := o.uvarint(uint64(o.copyLen))
	o.copyLen = 0
	return err
}

func (o *opWriter) copyOp(off, n int64) error {
	if n == 0 {
		return nil
	}
	if o.copyLen > 0 && o.copyOff+o.copyLen == off {
		o.copyLen += n
		return nil
	}
	if err := o.flushCopy(); err != nil {
		return err
	}
	o.copyOff, o.copyLen = off, n
	return nil
}

// dataOp writes a literal op for n bytes read from r.
func (o *opWriter) dataOp(r io.Reader, n int64) error {
	if n == 0 {
		return nil
	}
	if err := o.flushCopy(); err != nil {
		return err
	}
	if err := o.w.WriteByte(opData); err != nil {
		return err
	}
	if err := o.uvarint(uint64(n)); err != nil {
		return err
	}
	_, err := io.CopyN(o.w, r, n)
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

package delta

import (
	"bufio"
	"encoding/binary"
	"io"

	wire "github.com/plumb-os/plumb/format/delta"
)

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
	if err := o.w.WriteByte(wire.OpCopy); err != nil {
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
	if err := o.w.WriteByte(wire.OpData); err != nil {
		return err
	}
	if err := o.uvarint(uint64(n)); err != nil {
		return err
	}
	_, err := io.CopyN(o.w, r, n)
	return err
}

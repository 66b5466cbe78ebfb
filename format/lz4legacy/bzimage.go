package lz4legacy

import (
	"encoding/binary"
	"errors"
)

// BzImageStream finds the LZ4 legacy stream of an x86 bzImage's kernel
// payload (boot protocol 2.08 or later: payload_offset and payload_length
// in the setup header). It returns the stream's offset and length in b:
// the payload minus the 32-bit uncompressed size the kernel build appends
// to it. It fails for anything else (not a bzImage, an older protocol, a
// payload compressed otherwise); callers then treat the file as opaque.
func BzImageStream(b []byte) (off, n int, err error) {
	le := binary.LittleEndian
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return 0, 0, errors.New("bzImage: no setup header (HdrS at 0x202)")
	}
	if v := le.Uint16(b[0x206:]); v < 0x208 {
		return 0, 0, errors.New("bzImage: boot protocol before 2.08: no payload fields")
	}
	setup := int(b[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(le.Uint32(b[0x248:]))
	length := int(le.Uint32(b[0x24c:]))
	if start < 0 || length < 8 || start > len(b)-length {
		return 0, 0, errors.New("bzImage: payload past the end of the file")
	}
	if le.Uint32(b[start:]) != Magic {
		return 0, 0, errors.New("bzImage: payload is not an LZ4 legacy stream")
	}
	return start, length - 4, nil
}

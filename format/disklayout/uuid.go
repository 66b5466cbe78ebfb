package disklayout

import (
	"crypto/sha256"
	"encoding/hex"
)

// namespace is the name-based UUID namespace of Plumb disk images,
// 5b0e4a8c-0d0c-4f8e-9a51-706c756d6221.
var namespace = [16]byte{0x5b, 0x0e, 0x4a, 0x8c, 0x0d, 0x0c, 0x4f, 0x8e, 0x9a, 0x51, 0x70, 0x6c, 0x75, 0x6d, 0x62, 0x21}

// SeedUUID derives a UUID from the layout seed and a purpose ("disk",
// "partition/plumb-data", "ext4/uuid"): the first 16 bytes of
// sha256(namespace, seed, NUL, purpose), with the RFC 9562 version 8
// (custom) and variant bits set, in lower case
// ("xxxxxxxx-xxxx-8xxx-yxxx-xxxxxxxxxxxx").
func SeedUUID(seed, purpose string) string {
	h := sha256.New()
	h.Write(namespace[:])
	h.Write([]byte(seed + "\x00" + purpose))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 8<<4
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

package diskimg

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/google/uuid"
)

// plumbNamespace is the name-based UUID namespace of Plumb disk images.
var plumbNamespace = uuid.MustParse("5b0e4a8c-0d0c-4f8e-9a51-706c756d6221")

// seedUUID derives a UUID from the layout seed and a purpose ("disk",
// "partition/plumb-data", "ext4/uuid"): the first 16 bytes of
// sha256(namespace, seed, NUL, purpose), with the RFC 9562 version 8
// (custom) and variant bits set.
func seedUUID(seed, purpose string) uuid.UUID {
	return uuid.NewHash(sha256.New(), plumbNamespace, []byte(seed+"\x00"+purpose), 8)
}

// seedVolumeID derives a FAT volume serial number from the seed.
func seedVolumeID(seed string) uint32 {
	sum := sha256.Sum256([]byte(seed + "\x00fat/volume-id"))
	return binary.LittleEndian.Uint32(sum[:4])
}

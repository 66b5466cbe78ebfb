package diskimg

import (
	"crypto/sha256"
	"encoding/binary"
)

// seedVolumeID derives a FAT volume serial number from the seed.
func seedVolumeID(seed string) uint32 {
	sum := sha256.Sum256([]byte(seed + "\x00fat/volume-id"))
	return binary.LittleEndian.Uint32(sum[:4])
}

// Package disklayout owns the layout of a Plumb disk: partition 1 the ESP
// (FAT32), 2 and 3 the A/B root slots (raw squashfs images), 4 the data
// partition (ext4); their GPT names, type GUIDs and sizes, and the UUIDs
// derived from the layout's seed. The builder writes the layout
// (builder through internal/diskimg), the installer writes it on a device,
// plumb-init and the agent find their partitions by these names. The
// format is specified in disklayout.md.
//
// Every GUID and UUID derives from Layout.Seed, so two disks of the same
// recipe have the same partition UUIDs across releases.
package disklayout

import (
	"errors"
	"fmt"
)

const (
	// MiB is the partition alignment: every partition starts and ends on it.
	MiB = 1 << 20
	// GiB is 1024 MiB.
	GiB = 1 << 30

	SectorSize = 512
	// GPTHead is the space before the first partition (protective MBR,
	// primary GPT header and entries, then alignment padding); GPTTail the
	// space after the last one (backup entries and header, padded so the
	// disk size is a whole number of MiB).
	GPTHead = 1 * MiB
	GPTTail = 1 * MiB

	// MinESPSize keeps the ESP a real FAT32 filesystem: at least 65525
	// clusters with the 512-byte clusters used up to 260 MiB.
	MinESPSize = 33 * MiB
	// MinRootSize is the smallest root slot.
	MinRootSize = 1 * MiB
	// MinDataSize is the smallest data partition (ext4 with its journal).
	MinDataSize = 32 * MiB
)

// GPT partition type GUIDs.
const (
	TypeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRootX8664 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeLinuxFS   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// Partition names (GPT labels) and filesystem labels.
const (
	NameESP   = "ESP"
	NameRootA = "plumb-root-a"
	NameRootB = "plumb-root-b"
	NameData  = "plumb-data"
)

// Layout sizes the partitions. Sizes are in bytes and are rounded up to a
// whole MiB.
type Layout struct {
	ESPSize, RootSize, DataSize int64 // RootSize is per slot
	// Seed derives all GUIDs, UUIDs and volume IDs (e.g. recipe name and
	// hardware). It must not contain the version, so the partition UUIDs
	// stay the same across releases of one recipe.
	Seed string
}

// Partition is one entry of the disk's GPT.
type Partition struct {
	Index    int    // 1-based
	Name     string // GPT partition name
	TypeGUID string // upper case
	PartUUID string // lower case, as blkid and root=PARTUUID= write it
	Start    int64  // bytes from the start of the disk
	Size     int64  // bytes
}

// Partitions returns the partition table that Write produces for l. It is
// deterministic: the same Layout always gives the same table.
func (l Layout) Partitions() []Partition {
	defs := []struct {
		name, typ string
		size      int64
	}{
		{NameESP, TypeESP, l.ESPSize},
		{NameRootA, TypeRootX8664, l.RootSize},
		{NameRootB, TypeRootX8664, l.RootSize},
		{NameData, TypeLinuxFS, l.DataSize},
	}
	parts := make([]Partition, 0, len(defs))
	start := int64(GPTHead)
	for i, d := range defs {
		size := AlignUp(d.size)
		parts = append(parts, Partition{
			Index:    i + 1,
			Name:     d.name,
			TypeGUID: d.typ,
			PartUUID: SeedUUID(l.Seed, "partition/"+d.name),
			Start:    start,
			Size:     size,
		})
		start += size
	}
	return parts
}

// DiskSize returns the size in bytes of the image Write produces for l.
func (l Layout) DiskSize() int64 {
	parts := l.Partitions()
	last := parts[len(parts)-1]
	return last.Start + last.Size + GPTTail
}

// Validate checks the sizes and the seed.
func (l Layout) Validate() error {
	if l.Seed == "" {
		return errors.New("layout.seed: expected a non-empty seed (recipe name and hardware), got an empty string")
	}
	for _, c := range []struct {
		name      string
		field     string
		size, min int64
	}{
		{NameESP, "espSize", l.ESPSize, MinESPSize},
		{NameRootA + "/" + NameRootB, "rootSize", l.RootSize, MinRootSize},
		{NameData, "dataSize", l.DataSize, MinDataSize},
	} {
		if c.size < c.min {
			return fmt.Errorf("partition %s: layout.%s is %d bytes, below the minimum of %d bytes (%d MiB)",
				c.name, c.field, c.size, c.min, c.min/MiB)
		}
	}
	return nil
}

// AlignUp rounds n up to a whole MiB (0 for n <= 0).
func AlignUp(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + MiB - 1) / MiB * MiB
}

// Package diskimg owns the layout and writing of Plumb's GPT disk image:
// partition 1 the ESP (FAT32), 2 and 3 the A/B root slots (raw squashfs
// images), 4 the data partition (ext4).
//
// Call Layout.Partitions first when the partition UUIDs are needed before the
// disk exists (the boot entry's root=PARTUUID=...), then Write. Every GUID,
// UUID and volume ID derives from Layout.Seed and every timestamp is
// Spec.ModTime, so two Writes of the same Spec give byte-identical images.
//
// The ESP and the GPT are written with go-diskfs; the ext4 data partition is
// made by e2fsprogs (mke2fs and debugfs), which must be installed.
package diskimg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/plumb-os/plumb/builder/fstree"
)

const (
	// MiB is the partition alignment: every partition starts and ends on it.
	MiB = 1 << 20
	// GiB is 1024 MiB.
	GiB = 1 << 30

	sectorSize = 512
	// gptHead is the space before the first partition (protective MBR,
	// primary GPT header and entries, then alignment padding); gptTail the
	// space after the last one (backup entries and header, padded so the
	// disk size is a whole number of MiB).
	gptHead = 1 * MiB
	gptTail = 1 * MiB

	// MinESPSize keeps the ESP a real FAT32 filesystem: at least 65525
	// clusters with the 512-byte clusters used up to 260 MiB.
	MinESPSize = 33 * MiB
	// MinRootSize is the smallest root slot.
	MinRootSize = 1 * MiB
	// MinDataSize is the smallest data partition (ext4 with its journal).
	MinDataSize = 32 * MiB

	// minModTime is FAT's epoch, 1980-01-01 00:00:00 UTC; FAT cannot store
	// an earlier time.
	minModTime = 315532800
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

	espLabel  = "ESP"
	dataLabel = "plumb-data"
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

// ESPFile is one file to put on the ESP. Path is absolute on the ESP
// ("/EFI/BOOT/BOOTX64.EFI"); Size must be the number of bytes Source yields.
type ESPFile struct {
	Path   string
	Source fstree.Source
	Size   int64
}

// Spec is everything Write puts on the disk.
type Spec struct {
	Layout Layout
	// ESP lists the ESP's files; missing parent directories are created.
	ESP []ESPFile
	// RootA is the host path of slot A's squashfs image. Slot B stays empty
	// (a hole in the sparse image file).
	RootA string
	// DataDirs are directories to create on the data filesystem
	// ("plumb", "plumb/tuf"); missing parents are created. Owner root,
	// mode 0755.
	DataDirs []string
	// ModTime (seconds since the Unix epoch, at or after 1980) is every
	// timestamp on the ESP and the data filesystem.
	ModTime int64
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
	start := int64(gptHead)
	for i, d := range defs {
		size := alignUp(d.size)
		parts = append(parts, Partition{
			Index:    i + 1,
			Name:     d.name,
			TypeGUID: d.typ,
			PartUUID: seedUUID(l.Seed, "partition/"+d.name).String(),
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
	return last.Start + last.Size + gptTail
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

// Write creates the disk image at path: a sparse file, created or
// truncated. The caller passes a temporary name and renames it when Write
// succeeds. Bad input (sizes below the minimum, a root image larger than
// its slot, ESP content larger than the ESP) gives one error line naming
// the partition, the needed and the available size. On any error no file
// is left at path.
func Write(ctx context.Context, path string, spec Spec) (_ []Partition, err error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	parts := spec.Layout.Partitions()
	rootSize, err := checkRootImage(spec.RootA, parts[1])
	if err != nil {
		return nil, err
	}
	if err := checkESPContent(spec.ESP, parts[0]); err != nil {
		return nil, err
	}
	tools, err := findE2fsprogs()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating disk image: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing disk image: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	size := spec.Layout.DiskSize()
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("sizing disk image to %d bytes: %w", size, err)
	}

	if err := writeGPT(f, size, spec.Layout.Seed, parts); err != nil {
		return nil, fmt.Errorf("writing partition table: %w", err)
	}
	if err := writeESP(ctx, f, parts[0], spec); err != nil {
		return nil, fmt.Errorf("writing partition %s: %w", NameESP, err)
	}
	if err := writeData(ctx, tools, path, parts[3], spec); err != nil {
		return nil, fmt.Errorf("writing partition %s: %w", NameData, err)
	}
	if err := writeRoot(ctx, f, parts[1], spec.RootA, rootSize); err != nil {
		return nil, fmt.Errorf("writing partition %s: %w", NameRootA, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("syncing disk image: %w", err)
	}
	return parts, nil
}

func (s Spec) validate() error {
	if err := s.Layout.Validate(); err != nil {
		return err
	}
	if s.ModTime < minModTime {
		return fmt.Errorf("modTime: expected a time at or after 1980-01-01 (%d, FAT's epoch), got %d (%s)",
			int64(minModTime), s.ModTime, time.Unix(s.ModTime, 0).UTC().Format(time.RFC3339))
	}
	if s.RootA == "" {
		return errors.New("rootA: expected the host path of slot A's squashfs image, got an empty string")
	}
	if _, err := espTree(s.ESP); err != nil {
		return err
	}
	if _, err := dataDirs(s.DataDirs); err != nil {
		return err
	}
	return nil
}

func alignUp(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + MiB - 1) / MiB * MiB
}

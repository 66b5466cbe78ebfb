package diskimg

import (
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/plumb-os/plumb/format/disklayout"
)

// writeGPT writes the protective MBR and the primary and backup GPT for
// parts, with the disk GUID derived from seed.
func writeGPT(f *os.File, size int64, seed string, parts []disklayout.Partition) error {
	table := &gpt.Table{
		LogicalSectorSize:  disklayout.SectorSize,
		PhysicalSectorSize: disklayout.SectorSize,
		GUID:               disklayout.SeedUUID(seed, "disk"),
		ProtectiveMBR:      true,
	}
	for _, p := range parts {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: p.Index,
			Start: uint64(p.Start / disklayout.SectorSize),
			End:   uint64((p.Start+p.Size)/disklayout.SectorSize - 1),
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.TypeGUID),
			Name:  p.Name,
			GUID:  p.PartUUID,
		})
	}
	w, err := file.New(f, false).Writable()
	if err != nil {
		return err
	}
	return table.Write(w, size)
}

// WriteTable writes l's protective MBR and primary and backup GPT to f, a
// disk of size bytes (at least l.DiskSize()): the partition table of the
// image Write produces, on a disk that may be larger (the backup GPT goes
// to its end). The installer writes a device's disk with it.
func WriteTable(f *os.File, size int64, l disklayout.Layout) ([]disklayout.Partition, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if need := l.DiskSize(); size < need {
		return nil, fmt.Errorf("disk of %d bytes: expected at least %d bytes for the layout", size, need)
	}
	parts := l.Partitions()
	if err := writeGPT(f, size, l.Seed, parts); err != nil {
		return nil, fmt.Errorf("writing partition table: %w", err)
	}
	return parts, nil
}

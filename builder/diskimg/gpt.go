package diskimg

import (
	"os"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// writeGPT writes the protective MBR and the primary and backup GPT for
// parts, with the disk GUID derived from seed.
func writeGPT(f *os.File, size int64, seed string, parts []Partition) error {
	table := &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		GUID:               seedUUID(seed, "disk").String(),
		ProtectiveMBR:      true,
	}
	for _, p := range parts {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: p.Index,
			Start: uint64(p.Start / sectorSize),
			End:   uint64((p.Start+p.Size)/sectorSize - 1),
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

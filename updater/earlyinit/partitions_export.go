package earlyinit

import (
	"io"
	"log/slog"
)

// Partition is one GPT partition of a block device the kernel sees, as the
// early init finds them. Exported for the agent (updater/slot), which needs
// the same view of the disk to find the other root slot.
type Partition = partition

// ScanPartitions reads the GPT of every whole disk under sysBlock
// ("/sys/class/block" on a device) and returns the partitions whose kernel
// device exists under dev ("/dev"). Disks without a GPT are skipped. log may
// be nil.
func ScanPartitions(sysBlock, dev string, log *slog.Logger) ([]Partition, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return scanPartitions(blockPaths{sysBlock: sysBlock, dev: dev}, log)
}

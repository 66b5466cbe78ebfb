package earlyinit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// partition is one GPT partition of a block device the kernel sees.
type partition struct {
	Disk     string // kernel name of the whole disk ("vda")
	Index    int    // 1-based GPT entry number
	Name     string // GPT partition name ("plumb-root-a")
	PARTUUID string // unique partition GUID, lower case
	Device   string // device node ("/dev/vda2")
}

// blockPaths are where the block devices are looked up; tests point them
// at a fake sysfs tree and a directory holding disk images.
type blockPaths struct {
	sysBlock string // "/sys/class/block"
	dev      string // "/dev"
}

var defaultBlockPaths = blockPaths{sysBlock: "/sys/class/block", dev: "/dev"}

// scanPartitions reads the GPT of every whole disk under sysBlock and returns
// all partitions whose kernel device exists. Disks without a GPT, empty
// disks and unreadable disks are skipped (logged at debug level).
func scanPartitions(bp blockPaths, log *slog.Logger) ([]partition, error) {
	entries, err := os.ReadDir(bp.sysBlock)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var parts []partition
	for _, e := range entries {
		disk := e.Name()
		dir := filepath.Join(bp.sysBlock, disk)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			continue // a partition, not a whole disk
		}
		if size, _ := readSysInt(filepath.Join(dir, "size")); size == 0 {
			continue
		}
		found, err := diskPartitions(bp, disk)
		if err != nil {
			log.Debug("disk skipped", "disk", disk, "reason", err.Error())
			continue
		}
		parts = append(parts, found...)
	}
	return parts, nil
}

// diskPartitions reads one disk's GPT and maps its entries to the kernel's
// partition devices (/sys/class/block/<disk>/<part>/partition holds the index).
func diskPartitions(bp blockPaths, disk string) ([]partition, error) {
	dir := filepath.Join(bp.sysBlock, disk)
	lbs, err := readSysInt(filepath.Join(dir, "queue", "logical_block_size"))
	if err != nil || lbs <= 0 {
		lbs = 512
	}
	f, err := os.Open(filepath.Join(bp.dev, disk))
	if err != nil {
		return nil, fmt.Errorf("opening disk: %w", err)
	}
	defer f.Close()
	table, err := gpt.Read(f, int(lbs), int(lbs))
	if err != nil {
		return nil, fmt.Errorf("reading GPT: %w", err)
	}
	devByIndex := map[int]string{}
	subs, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	for _, s := range subs {
		if idx, err := readSysInt(filepath.Join(dir, s.Name(), "partition")); err == nil {
			devByIndex[int(idx)] = s.Name()
		}
	}
	var parts []partition
	for _, p := range table.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		name, ok := devByIndex[p.Index]
		if !ok {
			continue // the kernel has not announced it (yet)
		}
		parts = append(parts, partition{
			Disk:     disk,
			Index:    p.Index,
			Name:     p.Name,
			PARTUUID: strings.ToLower(p.GUID),
			Device:   filepath.Join(bp.dev, name),
		})
	}
	return parts, nil
}

func readSysInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// errNotFound is returned by findRoot while the root partition is missing.
var errNotFound = errors.New("no partition with that PARTUUID")

// findRoot returns the partition with the given PARTUUID and, if the same
// disk has one, the partition named dataName.
func findRoot(bp blockPaths, partuuid, dataName string, log *slog.Logger) (root partition, data *partition, err error) {
	parts, err := scanPartitions(bp, log)
	if err != nil {
		return partition{}, nil, err
	}
	found := false
	for _, p := range parts {
		if p.PARTUUID == strings.ToLower(partuuid) {
			if _, err := os.Stat(p.Device); err != nil {
				continue // node not created yet
			}
			root, found = p, true
			break
		}
	}
	if !found {
		return partition{}, nil, fmt.Errorf("PARTUUID %s among %d partitions: %w", partuuid, len(parts), errNotFound)
	}
	for _, p := range parts {
		if p.Disk == root.Disk && p.Name == dataName {
			p := p
			data = &p
			break
		}
	}
	return root, data, nil
}

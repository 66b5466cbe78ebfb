package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/diskimg"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// diskResult is what the disk step produced.
type diskResult struct {
	partitions []disklayout.Partition
	entry      bootentry.Entry
	layout     disklayout.Layout
}

// writeDisk writes the flashable image: the ESP with systemd-boot and a
// committed entry for slot A, slot A holding the root filesystem, slot B
// empty, and an empty data filesystem.
func (b *build) writeDisk(ctx context.Context, st *progress.Step) error {
	layout := disklayout.Layout{
		ESPSize:  int64(b.r.Partitions.ESP),
		RootSize: int64(b.r.Partitions.Root),
		DataSize: int64(b.r.Partitions.Data),
		Seed:     b.r.Name + "/" + b.r.Hardware,
	}
	var rootA string
	for _, p := range layout.Partitions() {
		if p.Name == disklayout.NameRootA {
			rootA = p.PartUUID
		}
	}
	entry := bootentry.Entry{Version: b.r.Version, Slot: disklayout.A, PartUUID: rootA, Verity: b.verityCmdline(), Cmdline: b.kernelCmdline(), UKI: b.sb != nil}
	initrd, err := os.Stat(b.initrdPath)
	if err != nil {
		return err
	}
	esp := []diskimg.ESPFile{
		{Path: bootentry.Bootloader, Source: b.espBoot.Source, Size: b.espBoot.Size},
		{Path: bootentry.LoaderConfPath, Source: fstree.Bytes(bootentry.LoaderConf), Size: int64(len(bootentry.LoaderConf))},
		{Path: bootentry.EntriesDir + "/" + entry.Name(), Source: fstree.Bytes(entry.Content()), Size: int64(len(entry.Content()))},
	}
	if b.sb != nil {
		fi, err := os.Stat(b.sb.ukis[string(disklayout.A)])
		if err != nil {
			return err
		}
		esp = append(esp, diskimg.ESPFile{Path: bootentry.SlotUKI(disklayout.A), Source: fstree.HostFile(b.sb.ukis[string(disklayout.A)]), Size: fi.Size()})
	} else {
		esp = append(esp,
			diskimg.ESPFile{Path: bootentry.SlotKernel(disklayout.A), Source: b.kernel.image.Source, Size: b.kernel.image.Size},
			diskimg.ESPFile{Path: bootentry.SlotInitrd(disklayout.A), Source: fstree.HostFile(b.initrdPath), Size: initrd.Size()})
	}
	if err := b.checkSizes(esp); err != nil {
		return err
	}
	b.diskPath = filepath.Join(b.work, DiskFile)
	parts, err := diskimg.Write(ctx, b.diskPath, diskimg.Spec{
		Layout:     layout,
		ESP:        esp,
		RootA:      b.rootfsPath,
		DataDirs:   []string{"plumb"},
		DataSealed: b.r.Partitions.DataEncryption == recipe.DataSealed,
		ModTime:    max(b.epoch, fatEpoch),
	})
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	if err := b.writeVerityToDisk(parts[1].Start); err != nil {
		return err
	}
	b.disk = &diskResult{partitions: parts, entry: entry, layout: layout}
	// The kernel goes beside the outputs too (direct boot, installer).
	return copySource(filepath.Join(b.work, KernelFile), b.kernel.image.Source)
}

func copySource(dst string, src fstree.Source) error {
	r, err := src.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fatEpoch is 1980-01-01, the earliest time FAT can store: an earlier epoch
// (the default 0) gives the disk's timestamps this time instead.
const fatEpoch = 315532800

// espOverhead is what FAT32 needs besides the files: reserved sectors, two
// FATs, directories and cluster rounding, generously.
const espOverhead = 4 << 20

// checkSizes tells the recipe's author which partition is too small for
// its content, in the recipe's own terms.
func (b *build) checkSizes(esp []diskimg.ESPFile) error {
	root, err := os.Stat(b.rootfsPath)
	if err != nil {
		return err
	}
	if root.Size() > int64(b.r.Partitions.Root) {
		return fmt.Errorf("%w: %s: partitions.root: %s is too small for the root filesystem image of %s", ErrBadInput, b.r.Origin, b.r.Partitions.Root, recipe.Size(root.Size()))
	}
	if need := verity.SlotSize(root.Size()); b.verity != nil && need > int64(b.r.Partitions.Root) {
		return fmt.Errorf("%w: %s: partitions.root: %s is too small for the root filesystem image and its verity hash tree (%s)", ErrBadInput, b.r.Origin, b.r.Partitions.Root, recipe.Size(need))
	}
	// Two slots' kernels and initrds must fit, so that an update can
	// install the other slot's beside the running one's.
	need := int64(espOverhead)
	for _, f := range esp {
		need += f.Size
		if strings.HasPrefix(f.Path, "/plumb/") {
			need += f.Size
		}
	}
	if need > int64(b.r.Partitions.ESP) {
		return fmt.Errorf("%w: %s: partitions.esp: %s is too small for the boot files of two slots (%s)", ErrBadInput, b.r.Origin, b.r.Partitions.ESP, recipe.Size(need))
	}
	return nil
}

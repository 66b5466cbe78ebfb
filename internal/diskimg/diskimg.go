// Package diskimg writes Plumb's GPT disk image in the layout of
// format/disklayout: partition 1 the ESP (FAT32), 2 and 3 the A/B root
// slots (raw squashfs images), 4 the data partition (ext4). The builder
// writes whole images with it (plumb build) and the installer writes a
// device's disk (plumbd install), so it lives outside builder/.
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

	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/fstree"
)

const (
	// minModTime is FAT's epoch, 1980-01-01 00:00:00 UTC; FAT cannot store
	// an earlier time.
	minModTime = 315532800

	espLabel  = "ESP"
	dataLabel = "plumb-data"
)

// ESPFile is one file to put on the ESP. Path is absolute on the ESP
// ("/EFI/BOOT/BOOTX64.EFI"); Size must be the number of bytes Source yields.
type ESPFile struct {
	Path   string
	Source fstree.Source
	Size   int64
}

// Spec is everything Write puts on the disk.
type Spec struct {
	Layout disklayout.Layout
	// ESP lists the ESP's files; missing parent directories are created.
	ESP []ESPFile
	// RootA is the host path of slot A's squashfs image. Slot B stays empty
	// (a hole in the sparse image file).
	RootA string
	// DataDirs are directories to create on the data filesystem
	// ("plumb", "plumb/tuf"); missing parents are created. Owner root,
	// mode 0755.
	DataDirs []string
	// DataSealed writes the data partition unprovisioned (format/datapart):
	// the device's first boot encrypts it with LUKS2 and seals the key to
	// its TPM.
	DataSealed bool
	// ModTime (seconds since the Unix epoch, at or after 1980) is every
	// timestamp on the ESP and the data filesystem.
	ModTime int64
}

// Write creates the disk image at path: a sparse file, created or
// truncated. The caller passes a temporary name and renames it when Write
// succeeds. Bad input (sizes below the minimum, a root image larger than
// its slot, ESP content larger than the ESP) gives one error line naming
// the partition, the needed and the available size. On any error no file
// is left at path.
func Write(ctx context.Context, path string, spec Spec) (_ []disklayout.Partition, err error) {
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
		return nil, fmt.Errorf("writing partition %s: %w", disklayout.NameESP, err)
	}
	if err := writeData(ctx, tools, path, parts[3], spec); err != nil {
		return nil, fmt.Errorf("writing partition %s: %w", disklayout.NameData, err)
	}
	if err := writeRoot(ctx, f, parts[1], spec.RootA, rootSize); err != nil {
		return nil, fmt.Errorf("writing partition %s: %w", disklayout.NameRootA, err)
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

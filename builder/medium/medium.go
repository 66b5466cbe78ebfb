// Package medium writes update media: a directory made by plumb export
// (tufrepo.Export) packed into an image ready to be written to a USB stick,
// ext4 or FAT, labelled format.Label so that plumbd finds it when it is
// inserted. It runs mkfs.ext4 (e2fsprogs) or mkfs.vfat and mcopy
// (dosfstools, mtools).
package medium

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	format "github.com/plumb-os/plumb/format/medium"
)

// Filesystems an image can have.
const (
	Ext4 = "ext4"
	FAT  = "fat"
)

// WriteImage packs dir into the image file out (fsType Ext4 or FAT), sized
// for dir's content plus room for the filesystem. out appears only when
// complete.
func WriteImage(ctx context.Context, dir, out, fsType string) error {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			total += (fi.Size() + 4095) &^ 4095
		}
		return nil
	})
	if err != nil {
		return err
	}
	size := (total + total/10 + 16<<20 + 1<<20 - 1) &^ (1<<20 - 1)
	tmp := out + ".tmp"
	os.Remove(tmp)
	defer os.Remove(tmp)
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	f.Close()
	switch fsType {
	case Ext4:
		err = run(ctx, "mkfs.ext4", "-q", "-F", "-L", format.Label, "-O", "^has_journal", "-E", "root_owner=0:0", "-d", dir, tmp)
	case FAT:
		if err = run(ctx, "mkfs.vfat", "-n", format.Label, tmp); err != nil {
			break
		}
		ents, rerr := os.ReadDir(dir)
		if rerr != nil {
			return rerr
		}
		args := []string{"-s", "-Q", "-i", tmp}
		for _, e := range ents {
			args = append(args, filepath.Join(dir, e.Name()))
		}
		err = run(ctx, "mcopy", append(args, "::/")...)
	default:
		return fmt.Errorf("medium: filesystem: expected %s or %s, got %q", Ext4, FAT, fsType)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

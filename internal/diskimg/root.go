package diskimg

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/plumb-os/plumb/format/disklayout"
)

// rootCopyChunk is how much of the root image is copied between two
// checks of the context.
const rootCopyChunk = 64 * disklayout.MiB

// checkRootImage returns the size of the root image at p, failing when it
// does not fit part.
func checkRootImage(p string, part disklayout.Partition) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("partition %s: root image: %w", part.Name, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("partition %s: root image %s: expected a regular file, got %s", part.Name, p, fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return 0, fmt.Errorf("partition %s: root image %s is empty", part.Name, p)
	}
	if fi.Size() > part.Size {
		return 0, fmt.Errorf("partition %s: root image %s needs %d bytes, the partition holds %d bytes (layout.rootSize)",
			part.Name, p, fi.Size(), part.Size)
	}
	return fi.Size(), nil
}

// writeRoot streams the root image into part. The copy goes through
// os.File.ReadFrom, so the kernel copies the bytes (copy_file_range) where
// it can; memory use is bounded either way.
func writeRoot(ctx context.Context, f *os.File, part disklayout.Partition, p string, size int64) error {
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := f.Seek(part.Start, io.SeekStart); err != nil {
		return err
	}
	var n int64
	for n < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := io.CopyN(f, src, min(rootCopyChunk, size-n))
		n += m
		if err == io.EOF {
			return fmt.Errorf("root image %s shrank while copying: got %d bytes, expected %d", p, n, size)
		}
		if err != nil {
			return fmt.Errorf("copying root image %s: %w", p, err)
		}
	}
	// The image must not have grown past the size checked against the slot.
	var one [1]byte
	if m, _ := src.Read(one[:]); m != 0 {
		return fmt.Errorf("root image %s grew while copying: more than %d bytes", p, size)
	}
	return nil
}

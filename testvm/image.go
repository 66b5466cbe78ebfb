package testvm

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// CopyImage copies a raw disk image to dst keeping its holes, so a VM can
// boot (and write to) a copy while the built image stays as it was. A 1 GiB
// image with 100 MiB of data costs 100 MiB of reads and disk.
func CopyImage(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copying disk image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("copying disk image: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copying disk image: %w", err)
	}
	if err := copySparse(out, in, fi.Size()); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("copying disk image %s: %w", src, err)
	}
	return out.Close()
}

func copySparse(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(in.Fd())
	var off int64
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(out, io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

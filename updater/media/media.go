// Package media finds and opens update media on a device: USB sticks (or
// any block device) written from a plumb export image, recognised by
// their filesystem label, and mounted read-only.
//
// Nothing on a medium is trusted for what it is: the agent reads it with
// the same TUF client and trusted root as the network repository
// (fetch.NewLocal). This package only answers "is there a medium, and
// does it look like an export" with one clear error line when it does not.
package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/medium"
)

// Label is the filesystem label of an update medium.
const Label = medium.Label

// Filesystem types a medium may have.
const (
	Ext4 = "ext4"
	VFAT = "vfat"
)

// Probe reads the filesystem type and label on dev ("", "" when it is
// neither ext4 nor FAT).
func Probe(dev string) (fsType, label string, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var b [2048]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && n < 512 {
		return "", "", fmt.Errorf("reading %s: %w", dev, err)
	}
	if n >= 2048 && binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xEF53 {
		return Ext4, cstr(b[1024+0x78 : 1024+0x78+16]), nil
	}
	if b[510] == 0x55 && b[511] == 0xAA && binary.LittleEndian.Uint16(b[11:]) >= 512 {
		switch {
		case bytes.HasPrefix(b[82:90], []byte("FAT32")):
			return VFAT, strings.TrimSpace(string(b[71:82])), nil
		case bytes.HasPrefix(b[54:62], []byte("FAT")):
			return VFAT, strings.TrimSpace(string(b[43:54])), nil
		}
	}
	return "", "", nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Scan lists the block devices (devDir/<name> for each entry of sysBlock,
// /sys/class/block) that carry a filesystem labelled Label, sorted by
// name. skip leaves out devices by name (the boot disk's partitions).
// Devices that cannot be read are left out.
func Scan(sysBlock, devDir string, skip func(name string) bool) []string {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if skip != nil && skip(name) || strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		dev := filepath.Join(devDir, name)
		if _, label, err := Probe(dev); err == nil && label == Label {
			out = append(out, dev)
		}
	}
	sort.Strings(out)
	return out
}

// Mount mounts the medium dev read-only (nosuid, nodev, noexec) at dir,
// created if needed, and returns how to unmount it. A device that holds
// neither ext4 nor FAT, or does not mount, is one error line naming it.
func Mount(dev, dir string) (unmount func() error, err error) {
	fsType, _, err := Probe(dev)
	if err != nil {
		return nil, fmt.Errorf("update medium %s: unreadable: %w", dev, err)
	}
	if fsType == "" {
		return nil, fmt.Errorf("update medium %s: expected an ext4 or FAT filesystem (plumb export -o FILE.img), found neither", dev)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	data := ""
	if fsType == Ext4 {
		data = "noload" // no journal replay: the stick stays as written
	}
	if err := unix.Mount(dev, dir, fsType, flags, data); err != nil {
		return nil, fmt.Errorf("update medium %s: mounting %s read-only at %s: %w", dev, fsType, dir, err)
	}
	return func() error { return unix.Unmount(dir, 0) }, nil
}

// ErrNoExport is returned by Check for a directory that holds no export.
var ErrNoExport = errors.New("no Plumb update on it")

// Check makes sure dir looks like a plumb export: metadata/root.json and
// metadata/timestamp.json are regular files (their content is verified
// later, by TUF).
func Check(dir string) error {
	for _, name := range []string{"metadata/timestamp.json", "metadata/root.json"} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("update medium %s: %w: %s is missing (expected what plumb export writes: metadata/ and targets/)", dir, ErrNoExport, name)
		case err != nil:
			return fmt.Errorf("update medium %s: unreadable: %w", dir, err)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("update medium %s: %s: expected a regular file, got %s", dir, name, fi.Mode().Type())
		}
	}
	return nil
}

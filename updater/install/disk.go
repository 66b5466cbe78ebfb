package install

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/plumb-os/plumb/internal/errclass"
)

// ErrNotEmpty marks a disk the installer refuses to overwrite without
// --force: it holds a partition table, a filesystem or other data.
var ErrNotEmpty = errors.New("disk is not empty")

// ErrNoDisk marks a failed automatic disk choice: no empty disk, or more
// than one.
var ErrNoDisk = errors.New("no single empty disk")

// probeSize is how much of a disk's start Inspect reads: the protective
// MBR, the GPT header and its entries, and the superblocks of the common
// filesystems all lie in the first MiB.
const probeSize = 1 << 20

// Disk is what Inspect found on a disk.
type Disk struct {
	Path string
	Size int64
	// Holds is empty for a disk whose first MiB is all zeros, else what
	// it holds ("a GPT partition table", "an ext4 filesystem", "data").
	Holds string
}

// Empty reports whether the disk's start is all zeros.
func (d Disk) Empty() bool { return d.Holds == "" }

// Inspect reads the first MiB of the disk (or image file) at path and says
// what it holds. It never writes.
func Inspect(path string) (Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return Disk{}, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Disk{}, fmt.Errorf("size of %s: %w", path, err)
	}
	buf := make([]byte, min(size, probeSize))
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return Disk{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return Disk{Path: path, Size: size, Holds: identify(buf)}, nil
}

// identify names what the first bytes of a disk hold; "" for all zeros.
func identify(b []byte) string {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case at(512, "EFI PART") || at(4096, "EFI PART"):
		return "a GPT partition table"
	case len(b) >= 1082 && binary.LittleEndian.Uint16(b[1080:]) == 0xEF53:
		return "an ext2/3/4 filesystem"
	case at(0, "hsqs"):
		return "a squashfs filesystem"
	case at(82, "FAT32") || at(54, "FAT1") || at(3, "mkfs.fat"):
		return "a FAT filesystem"
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA:
		return "an MBR partition table"
	case bytes.IndexFunc(b, func(r rune) bool { return r != 0 }) >= 0:
		return "data (non-zero bytes in its first MiB)"
	}
	return ""
}

// Pick chooses the disk to install to. A given path is inspected; "auto"
// (or "") looks at every whole disk listed in sysBlock ("/sys/class/block")
// with its node in dev ("/dev") and takes the only empty one of at least
// minSize bytes. Loop, RAM, optical and device-mapper devices are skipped.
func Pick(disk, sysBlock, dev string, minSize int64) (Disk, error) {
	if disk != "" && disk != "auto" {
		d, err := Inspect(disk)
		if err != nil {
			return Disk{}, errclass.Errorf(ErrNoDisk, "--disk %s: %v", disk, err)
		}
		return d, nil
	}
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return Disk{}, fmt.Errorf("listing disks: %w", err)
	}
	var empty []Disk
	var seen []string
	for _, e := range ents {
		name := e.Name()
		if skipDevice(name) {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			continue // a partition, not a whole disk
		}
		if sectors, err := readInt(filepath.Join(dir, "size")); err != nil || sectors == 0 {
			continue
		}
		d, err := Inspect(filepath.Join(dev, name))
		if err != nil {
			seen = append(seen, name+": "+err.Error())
			continue
		}
		switch {
		case d.Size < minSize:
			seen = append(seen, fmt.Sprintf("%s: %d bytes, too small", name, d.Size))
		case !d.Empty():
			seen = append(seen, name+" holds "+d.Holds)
		default:
			empty = append(empty, d)
		}
	}
	sort.Slice(empty, func(i, j int) bool { return empty[i].Path < empty[j].Path })
	switch len(empty) {
	case 1:
		return empty[0], nil
	case 0:
		if len(seen) == 0 {
			seen = []string{"no disks"}
		}
		return Disk{}, errclass.Errorf(ErrNoDisk, "--disk auto: expected one empty disk of at least %d bytes, found none (%s)", minSize, strings.Join(seen, "; "))
	default:
		var names []string
		for _, d := range empty {
			names = append(names, d.Path)
		}
		return Disk{}, errclass.Errorf(ErrNoDisk, "--disk auto: expected one empty disk, found %d (%s): pass --disk DEV", len(empty), strings.Join(names, ", "))
	}
}

func skipDevice(name string) bool {
	for _, p := range []string{"loop", "ram", "sr", "dm-", "zram", "md", "nbd", "fd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// loaderDevicePartUUID is systemd-boot's variable naming the partition it
// was started from (vendor GUID of the Boot Loader Interface).
const loaderDevicePartUUID = "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// BootPartUUID returns the PARTUUID (lower case) of the partition
// systemd-boot started the running kernel from, read from efivarfs mounted
// at dir: on an installer booted from a USB stick, the stick's ESP. It
// returns "" and no error when the variable is absent (no UEFI, no
// systemd-boot, or a kernel started directly as network boot does).
func BootPartUUID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, loaderDevicePartUUID))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading LoaderDevicePartUUID: %w", err)
	}
	// 4 bytes of attributes, then UTF-16LE text, NUL-terminated.
	if len(b) < 4 || (len(b)-4)%2 != 0 {
		return "", fmt.Errorf("LoaderDevicePartUUID: expected 4 bytes of attributes and UTF-16LE text, got %d bytes", len(b))
	}
	var s []byte
	for i := 4; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		if c > 0x7f {
			return "", fmt.Errorf("LoaderDevicePartUUID: expected a GUID, got a non-ASCII character")
		}
		s = append(s, byte(c))
	}
	return strings.ToLower(string(s)), nil
}

// PartUUIDs returns the unique GUIDs (lower case, as in PARTUUID=) of the
// partitions in the GPT of the disk (or image file) at path; none when it
// has no GPT. Sector sizes of 512 and 4096 bytes are tried.
func PartUUIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, sector := range []int64{512, 4096} {
		hdr := make([]byte, 92)
		if _, err := f.ReadAt(hdr, sector); err != nil {
			if errors.Is(err, io.EOF) {
				continue
			}
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if string(hdr[:8]) != "EFI PART" {
			continue
		}
		lba := int64(binary.LittleEndian.Uint64(hdr[72:]))
		count := int64(binary.LittleEndian.Uint32(hdr[80:]))
		size := int64(binary.LittleEndian.Uint32(hdr[84:]))
		if size < 128 || size > 4096 || count > 1024 || lba < 2 {
			return nil, fmt.Errorf("%s: GPT header: expected up to 1024 entries of 128-4096 bytes, got %d of %d at LBA %d", path, count, size, lba)
		}
		ents := make([]byte, count*size)
		if _, err := f.ReadAt(ents, lba*sector); err != nil {
			return nil, fmt.Errorf("reading the GPT entries of %s: %w", path, err)
		}
		var ids []string
		for i := int64(0); i < count; i++ {
			e := ents[i*size : (i+1)*size]
			if bytes.Equal(e[:16], make([]byte, 16)) {
				continue // unused entry: no partition type
			}
			g := e[16:32]
			ids = append(ids, fmt.Sprintf("%08x-%04x-%04x-%x-%x",
				binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16]))
		}
		return ids, nil
	}
	return nil, nil
}

// holdsPartition tells whether the disk at path has a partition with the
// given PARTUUID in its GPT.
func holdsPartition(path, partUUID string) (bool, error) {
	ids, err := PartUUIDs(path)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		if id == partUUID {
			return true, nil
		}
	}
	return false, nil
}

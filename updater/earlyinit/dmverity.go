package earlyinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/verity"
)

// dmControl is the device mapper's control node (devtmpfs makes it when
// dm_mod loads).
const dmControl = "/dev/mapper/control"

// VerityName is the device mapper name of the verified root; its node is
// /dev/mapper/VerityName.
const VerityName = "plumb-root"

// dm_ioctl and dm_target_spec sizes (linux/dm-ioctl.h).
const (
	dmIoctlSize    = int(unsafe.Sizeof(unix.DmIoctl{}))
	dmTargetSize   = int(unsafe.Sizeof(unix.DmTargetSpec{}))
	dmNameOffset   = 48
	dmDataStartOff = 16
)

// openVerity maps dev (a root slot) through the device mapper's verity
// target with p, read-only, and returns the node of the verified device.
// Any block whose hash does not match then reads as an I/O error.
// No Go device-mapper library is available to us, so this speaks the
// ioctls directly: DM_DEV_CREATE, DM_TABLE_LOAD, DM_DEV_SUSPEND (resume).
func openVerity(dev string, p *verity.Params, name string) (string, error) {
	sectors, target, args := p.Table(dev)
	node, err := dmMap(name, unix.DM_READONLY_FLAG, sectors, target, args)
	if err != nil {
		return "", fmt.Errorf("dm-verity: %w (is dm_verity in the initramfs?)", err)
	}
	return node, nil
}

// dmMap creates the device mapper device name with one target of sectors
// 512-byte sectors, loads its table (target, args), resumes it and makes
// its node /dev/mapper/<name>. flags are DM_READONLY_FLAG or 0.
func dmMap(name string, flags uint32, sectors uint64, target, args string) (string, error) {
	ctl, err := os.OpenFile(dmControl, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", dmControl, err)
	}
	defer ctl.Close()
	fd := ctl.Fd()

	buf := dmBuffer(name, 0, nil)
	if err := dmIoctl(fd, unix.DM_DEV_CREATE, buf); err != nil {
		return "", fmt.Errorf("creating %s: %w", name, err)
	}
	devNum := binary.NativeEndian.Uint64(buf[40:48])
	ok := false
	defer func() {
		if !ok {
			dmIoctl(fd, unix.DM_DEV_REMOVE, dmBuffer(name, 0, nil))
		}
	}()

	spec := make([]byte, dmTargetSize)
	binary.NativeEndian.PutUint64(spec[0:], 0)
	binary.NativeEndian.PutUint64(spec[8:], sectors)
	copy(spec[24:40], target)
	data := append(spec, args...)
	data = append(data, 0)
	for len(data)%8 != 0 {
		data = append(data, 0)
	}
	buf = dmBuffer(name, flags, data)
	clear(data)                                // a crypt table holds the key
	binary.NativeEndian.PutUint32(buf[20:], 1) // target_count
	err = dmIoctl(fd, unix.DM_TABLE_LOAD, buf)
	clear(buf)
	if err != nil {
		if target == "crypt" {
			args = "(key hidden)"
		}
		return "", fmt.Errorf("loading table %q %q: %w", target, args, err)
	}
	if err := dmIoctl(fd, unix.DM_DEV_SUSPEND, dmBuffer(name, 0, nil)); err != nil {
		return "", fmt.Errorf("resuming %s: %w", name, err)
	}
	node := "/dev/mapper/" + name
	if err := os.MkdirAll("/dev/mapper", 0o755); err != nil {
		return "", err
	}
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(devNum)); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("creating %s: %w", node, err)
	}
	ok = true
	return node, nil
}

// dmBuffer is a struct dm_ioctl for name with flags, followed by data.
func dmBuffer(name string, flags uint32, data []byte) []byte {
	size := dmIoctlSize + len(data)
	if size < 16<<10 {
		size = 16 << 10 // room for what the kernel returns
	}
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b[0:], 4) // interface version 4.0.0
	binary.NativeEndian.PutUint32(b[12:], uint32(size))
	binary.NativeEndian.PutUint32(b[dmDataStartOff:], uint32(dmIoctlSize))
	binary.NativeEndian.PutUint32(b[28:], flags)
	copy(b[dmNameOffset:dmNameOffset+127], name)
	copy(b[dmIoctlSize:], data)
	return b
}

func dmIoctl(fd uintptr, req uint, buf []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

package slot

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/bootentry"
)

// EFIVarsDir is where efivarfs is mounted on a device.
const EFIVarsDir = "/sys/firmware/efi/efivars"

// loaderEntrySelected is systemd-boot's variable naming the entry it booted
// (vendor GUID of the Boot Loader Interface).
const loaderEntrySelected = "LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// MountEFIVars mounts efivarfs at dir (EFIVarsDir), which plumbd does at
// start when it is not mounted yet.
func MountEFIVars(dir string) error {
	if err := unix.Mount("efivarfs", dir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mounting efivarfs at %s: %w", dir, err)
	}
	return nil
}

// LoaderEntrySelected returns the entry file name systemd-boot booted,
// read from efivarfs mounted at dir. systemd-boot reports the name before
// its boot-counter rename ("plumb-2.0.0+3.conf" while the ESP now has
// "+2-1"): compare with SameEntry.
func LoaderEntrySelected(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, loaderEntrySelected))
	if err != nil {
		return "", fmt.Errorf("reading LoaderEntrySelected: %w", err)
	}
	return decodeEFIString(b)
}

// decodeEFIString decodes an efivarfs file holding a string: 4 bytes of
// attributes, then UTF-16LE, NUL-terminated.
func decodeEFIString(b []byte) (string, error) {
	if len(b) < 4 || (len(b)-4)%2 != 0 {
		return "", fmt.Errorf("LoaderEntrySelected: expected 4 bytes of attributes and UTF-16LE text, got %d bytes", len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// SameEntry tells whether two entry file names are the same entry, ignoring
// boot counters ("plumb-2.0.0+3.conf" and "plumb-2.0.0+2-1.conf" are).
func SameEntry(a, b string) bool {
	ea, err1 := bootentry.ParseName(a)
	eb, err2 := bootentry.ParseName(b)
	if err1 != nil || err2 != nil {
		return strings.EqualFold(a, b)
	}
	return ea.ID() == eb.ID()
}

// Reboot syncs the filesystems and restarts the machine; in DryRun it only
// logs. It returns only on failure (or in DryRun).
func (d *Device) Reboot() error {
	if d.DryRun {
		d.log().Info("dry run: not rebooting")
		return nil
	}
	d.log().Info("rebooting")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("rebooting: %w", err)
	}
	return nil
}

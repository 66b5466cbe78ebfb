package slot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ESP is the file API the slot needs over the EFI system partition. Names
// are slash-separated and absolute within the ESP ("/loader/entries/x.conf").
type ESP interface {
	// ReadDir lists the file names in dir, sorted; a missing dir is empty.
	ReadDir(dir string) ([]string, error)
	// ReadFile reads a small file (a boot entry), at most maxEntrySize.
	ReadFile(name string) ([]byte, error)
	// Create creates or truncates name, creating its directory.
	Create(name string) (ESPFile, error)
	// Rename replaces newname by oldname durably (the directory is synced).
	Rename(oldname, newname string) error
	// Remove removes name durably; a missing name is not an error.
	Remove(name string) error
}

// ESPFile is a file being written on the ESP.
type ESPFile interface {
	io.WriteCloser
	Sync() error
}

// maxEntrySize bounds what ReadFile reads: boot entries are a few lines.
const maxEntrySize = 64 << 10

// DirESP is the ESP mounted at a directory (on a device: MountESP; in
// tests: any directory).
type DirESP string

var _ ESP = DirESP("")

func (e DirESP) path(name string) string { return filepath.Join(string(e), filepath.FromSlash(name)) }

// ReadDir implements ESP.
func (e DirESP) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(e.path(dir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range ents {
		if d.Type().IsRegular() {
			names = append(names, d.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadFile implements ESP.
func (e DirESP) ReadFile(name string) ([]byte, error) {
	f, err := os.Open(e.path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEntrySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxEntrySize {
		return nil, fmt.Errorf("reading %s: expected a boot entry of at most %d bytes, got more", name, maxEntrySize)
	}
	return b, nil
}

// Create implements ESP.
func (e DirESP) Create(name string) (ESPFile, error) {
	p := e.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.Create(p)
}

// Rename implements ESP.
func (e DirESP) Rename(oldname, newname string) error {
	if err := os.Rename(e.path(oldname), e.path(newname)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(e.path(newname)))
}

// Remove implements ESP.
func (e DirESP) Remove(name string) error {
	err := os.Remove(e.path(name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(e.path(name)))
}

// syncDir makes a change in dir durable. It flushes the whole filesystem
// (syncfs), not just the directory: on vfat a rename touches the FAT and
// directory clusters that fsync of one directory does not reliably write
// back, and a power cut after a "committed" rename then brought back the
// old entry (seen in the e2e update test). The ESP is small, so syncfs is
// cheap.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// MountESP mounts the vfat ESP device dev at dir (creating dir), as plumbd
// does at start (e.g. at /run/plumb/esp).
func MountESP(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mounting ESP: %w", err)
	}
	err := unix.Mount(dev, dir, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077")
	if errors.Is(err, unix.EBUSY) && mounted(dir) {
		return nil // a previous run of plumbd mounted it (init respawns plumbd)
	}
	if err != nil {
		return fmt.Errorf("mounting ESP %s at %s: %w", dev, dir, err)
	}
	return nil
}

// mounted reports whether dir is a mount point (in /proc/self/mountinfo).
func mounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

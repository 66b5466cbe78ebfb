// Package slot owns the A/B root slots of a device and their boot control:
// which slot is running and which is inactive, writing the inactive slot's
// partition, installing a slot's kernel and initrd on the ESP, the Boot
// Loader Specification boot-counting entries that systemd-boot follows
// (trial "+3", commit by rename) and what systemd-boot reports it booted.
//
// The update's call order is: Discard the inactive slot's entry,
// OpenInactive and stream the release into it, InstallBoot (boot files,
// then the trial entry last), Reboot. After a healthy boot of the trial:
// Commit. Entries and LoaderEntrySelected tell a trial, a committed slot
// and a rollback apart. Not safe for concurrent use.
package slot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/updater/earlyinit"
)

// Partition is a slot's root partition.
type Partition struct {
	Device   string // device node ("/dev/vda3"); a plain file in tests
	PARTUUID string // unique partition GUID, lower case
}

// Device is the boot control of one device.
type Device struct {
	// ESP is the mounted EFI system partition (MountESP + DirESP).
	ESP ESP
	// Slots maps the slot letters ("a", "b") to their root partitions.
	Slots map[string]Partition
	// Running is the slot this system booted from ("a" or "b").
	Running string
	// Log receives what the device does; nil discards.
	Log *slog.Logger
	// DryRun checks everything but changes nothing: OpenInactive returns
	// a file on os.DevNull, ESP changes are only logged, Reboot returns.
	DryRun bool
}

// Sentinel errors a caller may branch on.
var (
	// ErrRunningSlot: the operation would change the slot the system runs from.
	ErrRunningSlot = errors.New("refusing to change the running slot")
	// ErrDigest: a boot file does not match the release facts.
	ErrDigest = errors.New("boot file does not match the release facts")
)

// FromBoot builds the Device of the running system from the early init's
// boot record: the root partition's disk (read from its GPT, scanning the
// disks under sysBlock and dev: "/sys/class/block" and "/dev") gives the
// slots.
func FromBoot(bi bootrecord.BootInfo, esp ESP, sysBlock, dev string, log *slog.Logger) (*Device, error) {
	parts, err := earlyinit.ScanPartitions(sysBlock, dev, log)
	if err != nil {
		return nil, fmt.Errorf("finding slots: %w", err)
	}
	slots, running, err := FindSlots(parts, bi.RootPARTUUID)
	if err != nil {
		return nil, err
	}
	if bi.Slot != "" && bi.Slot != running {
		return nil, fmt.Errorf("finding slots: boot record says slot %q, but root PARTUUID %s is slot %q", bi.Slot, bi.RootPARTUUID, running)
	}
	return &Device{ESP: esp, Slots: slots, Running: running, Log: log}, nil
}

// FindSlots picks the root slots ("plumb-root-<slot>") on the disk holding
// the partition rootPARTUUID and returns them with the running slot.
func FindSlots(parts []earlyinit.Partition, rootPARTUUID string) (map[string]Partition, string, error) {
	var root *earlyinit.Partition
	for i, p := range parts {
		if strings.EqualFold(p.PARTUUID, rootPARTUUID) {
			root = &parts[i]
			break
		}
	}
	if root == nil {
		return nil, "", fmt.Errorf("finding slots: root PARTUUID %q: expected one of the %d partitions found, got none", rootPARTUUID, len(parts))
	}
	running := disklayout.SlotOf(root.Name)
	if running == "" {
		return nil, "", fmt.Errorf("finding slots: root partition %s: expected a name like \"plumb-root-a\", got %q", root.Device, root.Name)
	}
	slots := map[string]Partition{}
	for _, p := range parts {
		if p.Disk != root.Disk {
			continue
		}
		if s := disklayout.SlotOf(p.Name); s != "" {
			slots[s] = Partition{Device: p.Device, PARTUUID: strings.ToLower(p.PARTUUID)}
		}
	}
	if len(slots) != 2 {
		return nil, "", fmt.Errorf("finding slots: disk %s: expected two partitions plumb-root-a and plumb-root-b, got %d", root.Disk, len(slots))
	}
	return slots, running, nil
}

func (d *Device) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return d.Log
}

// Inactive is the slot the system does not run from, or "" when the
// device does not have exactly two slots including the running one.
func (d *Device) Inactive() string {
	if _, ok := d.Slots[d.Running]; !ok || len(d.Slots) != 2 {
		return ""
	}
	for s := range d.Slots {
		if s != d.Running {
			return s
		}
	}
	return ""
}

// inactive returns the inactive slot and its partition, refusing a setup
// in which writing it could hit the running slot.
func (d *Device) inactive() (string, Partition, error) {
	s := d.Inactive()
	if s == "" {
		return "", Partition{}, fmt.Errorf("running slot %q: expected one of two slots, have %d: %w", d.Running, len(d.Slots), ErrRunningSlot)
	}
	p, run := d.Slots[s], d.Slots[d.Running]
	if p.Device == "" || p.Device == run.Device || (p.PARTUUID != "" && strings.EqualFold(p.PARTUUID, run.PARTUUID)) {
		return "", Partition{}, fmt.Errorf("slot %s (%s) is the running slot %s (%s): %w", s, p.Device, d.Running, run.Device, ErrRunningSlot)
	}
	if a, err := os.Stat(p.Device); err == nil {
		if b, err := os.Stat(run.Device); err == nil && os.SameFile(a, b) {
			return "", Partition{}, fmt.Errorf("slot %s (%s) is the same file as the running slot %s (%s): %w", s, p.Device, d.Running, run.Device, ErrRunningSlot)
		}
	}
	return s, p, nil
}

// OpenInactive opens the inactive slot's partition for writing (O_RDWR, so
// an interrupted download can re-read its prefix; no truncation: a block
// device), refusing the running slot, and checks
// that an image of size bytes fits. The caller writes from offset 0,
// syncs and closes it. In DryRun it returns a file on os.DevNull.
func (d *Device) OpenInactive(size int64) (*os.File, error) {
	s, p, err := d.inactive()
	if err != nil {
		return nil, fmt.Errorf("opening inactive slot: %w", err)
	}
	if size <= 0 {
		return nil, fmt.Errorf("opening slot %s: image size: expected a positive size, got %d", s, size)
	}
	f, err := os.OpenFile(p.Device, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening slot %s: %w", s, err)
	}
	capacity, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening slot %s: size of %s: %w", s, p.Device, err)
	}
	if size > capacity {
		f.Close()
		return nil, fmt.Errorf("opening slot %s: image of %d bytes does not fit partition %s of %d bytes", s, size, p.Device, capacity)
	}
	if d.DryRun {
		f.Close()
		d.log().Info("dry run: not writing slot", "slot", s, "device", p.Device, "bytes", size)
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	d.log().Info("slot opened", "slot", s, "device", p.Device, "bytes", size, "capacity", capacity)
	return f, nil
}

// OpenRunning opens the running slot's partition read-only: the base a
// delta bundle is applied to. Nothing writes through it.
func (d *Device) OpenRunning() (*os.File, error) {
	p, ok := d.Slots[d.Running]
	if !ok || p.Device == "" {
		return nil, fmt.Errorf("opening running slot %q: expected one of the device's slots", d.Running)
	}
	f, err := os.Open(p.Device)
	if err != nil {
		return nil, fmt.Errorf("opening running slot %s: %w", d.Running, err)
	}
	return f, nil
}

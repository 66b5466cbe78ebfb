// Package bootentry owns the boot entries Plumb writes on the ESP for
// systemd-boot, and the ESP's layout: where the bootloader, loader.conf,
// the entries and each slot's kernel and initrd live. The builder writes
// the first entry; the agent writes trial entries, commits and discards
// them; systemd-boot counts tries in the entry's name. The format is
// specified in bootentry.md.
package bootentry

import (
	"fmt"
	"strings"
)

// ESP paths. Each slot's kernel and initrd live in a directory named after
// the slot, so installing a slot replaces exactly its own files.
const (
	// Bootloader is systemd-boot, at the removable-media path firmware
	// boots without an EFI variable.
	Bootloader = "/EFI/BOOT/BOOTX64.EFI"
	// LoaderConfPath holds LoaderConf.
	LoaderConfPath = "/loader/loader.conf"
	// EntriesDir holds the boot entries.
	EntriesDir = "/loader/entries"
)

// Paths of the boot files inside a release's root filesystem (relative to
// its root): the builder puts them there, the agent copies them to the ESP.
const (
	ImageKernel = "boot/vmlinuz"
	ImageInitrd = "boot/initrd.img"
)

// SlotKernel and SlotInitrd are the ESP paths of a slot's boot files.
func SlotKernel(slot string) string { return "/plumb/" + slot + "/vmlinuz" }
func SlotInitrd(slot string) string { return "/plumb/" + slot + "/initrd.img" }

// SlotUKI is the ESP path of a slot's signed Unified Kernel Image
// (Secure Boot releases).
func SlotUKI(slot string) string { return "/plumb/" + slot + "/uki.efi" }

// LoaderConf (loader/loader.conf) boots the first entry at once. Entries carry sort-key and
// version, so systemd-boot puts the newest release first and, with boot
// counting, an entry out of tries last.
const LoaderConf = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n"

// Entry is a Boot Loader Specification entry for a slot.
type Entry struct {
	Version  string
	Slot     string
	PartUUID string // of the slot's root partition
	Verity   string // the dm-verity words (format/verity Params.Cmdline), or ""
	Cmdline  string // the recipe's extra command line
	// UKI: the entry starts the slot's signed Unified Kernel Image
	// (SlotUKI), whose own .cmdline holds Options, instead of the kernel
	// and initrd.
	UKI bool
}

// FileName is the entry's name without boot counter ("plumb-1.0.0.conf").
// A trial entry adds "+3" before ".conf".
func (e Entry) FileName() string { return "plumb-" + e.Version + ".conf" }

// Options is the kernel command line the entry boots with.
func (e Entry) Options() string {
	opts := "root=PARTUUID=" + e.PartUUID + " ro plumb.slot=" + e.Slot
	if e.Verity != "" {
		opts += " " + e.Verity
	}
	return strings.TrimSpace(opts + " " + e.Cmdline)
}

// LoadOptions is the command line systemd-boot hands to the kernel for this
// entry, and measures into PCR 12: the entry's initrd as an initrd=
// option (a path on the ESP with backslashes), then its options.
func (e Entry) LoadOptions() string {
	return "initrd=" + strings.ReplaceAll(SlotInitrd(e.Slot), "/", `\`) + " " + e.Options()
}

// Content is the entry file.
func (e Entry) Content() string {
	if e.UKI {
		return fmt.Sprintf("title Plumb %s (slot %s)\nsort-key plumb\nversion %s\nefi %s\n",
			e.Version, e.Slot, e.Version, SlotUKI(e.Slot))
	}
	return fmt.Sprintf("title Plumb %s (slot %s)\nsort-key plumb\nversion %s\nlinux %s\ninitrd %s\noptions %s\n",
		e.Version, e.Slot, e.Version, SlotKernel(e.Slot), SlotInitrd(e.Slot), e.Options())
}

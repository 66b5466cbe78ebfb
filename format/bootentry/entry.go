// Package bootentry owns the boot entries Plumb writes on the ESP for
// systemd-boot, and the ESP's layout: where the bootloader, loader.conf,
// the entries and each slot's kernel and initrd live. The builder writes
// the first entry; the agent writes trial entries, commits and discards
// them; systemd-boot counts tries in the entry's name. The format is
// specified in bootentry.md.
package bootentry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
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
func SlotKernel(s disklayout.Slot) string { return "/plumb/" + string(s) + "/vmlinuz" }
func SlotInitrd(s disklayout.Slot) string { return "/plumb/" + string(s) + "/initrd.img" }

// SlotUKI is the ESP path of a slot's signed Unified Kernel Image
// (Secure Boot releases).
func SlotUKI(s disklayout.Slot) string { return "/plumb/" + string(s) + "/uki.efi" }

// LoaderConf (loader/loader.conf) boots the first entry at once. Entries carry sort-key and
// version, so systemd-boot puts the newest release first and, with boot
// counting, an entry out of tries last.
const LoaderConf = "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n"

// TrialTries is how many boots a freshly installed slot gets.
const TrialTries = 3

// Entry is a Plumb boot entry: a Boot Loader Specification entry for a
// slot. Its file name (Name) carries the version and, for a trial, the
// boot counter systemd-boot decrements; its content (Content) the slot,
// the root partition and the command line. Parse(e.Name(), e.Content())
// gives e back.
type Entry struct {
	Version  string          // the release version, as published ("1.2.0-rc.1+build.7")
	Slot     disklayout.Slot // the slot it boots
	PartUUID string          // of the slot's root partition, lower case
	Verity   string          // the dm-verity words (format/verity Params.Cmdline), or ""
	Cmdline  string          // the recipe's extra command line
	// UKI: the entry starts the slot's signed Unified Kernel Image
	// (SlotUKI), whose own .cmdline holds Options, instead of the kernel
	// and initrd.
	UKI bool
	// Counting tells whether the name carries a boot counter (a trial):
	// TriesLeft boots left, TriesDone boots tried ("+2-1").
	Counting             bool
	TriesLeft, TriesDone int
}

// NewTrial is the entry of a freshly installed slot: TrialTries boots.
func NewTrial(version string, s disklayout.Slot, partUUID, cmdline string) Entry {
	return Entry{Version: version, Slot: s, PartUUID: strings.ToLower(partUUID), Cmdline: cmdline, Counting: true, TriesLeft: TrialTries}
}

// ID is the entry's name without boot counter and ".conf", as systemd-boot
// reports it in LoaderEntrySelected: "plumb-" and the version, with "+"
// written as "_" (a "+" starts the boot counter in a name).
func (e Entry) ID() string { return prefix + strings.ReplaceAll(e.Version, "+", "_") }

// Name is the entry's file name in EntriesDir: "plumb-1.0.0.conf" when
// committed, "plumb-2.0.0+3.conf" for a fresh trial, "plumb-2.0.0+2-1.conf"
// once systemd-boot tried it once.
func (e Entry) Name() string {
	if !e.Counting {
		return e.ID() + ".conf"
	}
	if e.TriesDone == 0 {
		return fmt.Sprintf("%s+%d.conf", e.ID(), e.TriesLeft)
	}
	return fmt.Sprintf("%s+%d-%d.conf", e.ID(), e.TriesLeft, e.TriesDone)
}

// Committed tells whether the entry has no boot counter.
func (e Entry) Committed() bool { return !e.Counting }

// Trial tells whether the entry is a trial that systemd-boot will still try.
func (e Entry) Trial() bool { return e.Counting && e.TriesLeft > 0 }

// Exhausted tells whether the entry is a trial out of tries ("+0-N"):
// systemd-boot sorts it last, so the other slot boots.
func (e Entry) Exhausted() bool { return e.Counting && e.TriesLeft == 0 }

// Options is the kernel command line the entry boots with.
func (e Entry) Options() string {
	opts := "root=PARTUUID=" + e.PartUUID + " ro plumb.slot=" + string(e.Slot)
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

// Content is the entry file. Its version line is release.BootVersion, the
// form systemd-boot orders entries by, so it boots the newest release
// first exactly when release.CompareVersions says it is newest.
func (e Entry) Content() string {
	if e.UKI {
		return fmt.Sprintf("title Plumb %s (slot %s)\nsort-key plumb\nversion %s\nefi %s\n",
			e.Version, e.Slot, e.Version, SlotUKI(e.Slot))
	}
	return fmt.Sprintf("title Plumb %s (slot %s)\nsort-key plumb\nversion %s\nlinux %s\ninitrd %s\noptions %s\n",
		e.Version, e.Slot, release.BootVersion(e.Version), SlotKernel(e.Slot), SlotInitrd(e.Slot), e.Options())
}

const prefix = "plumb-"

// ParseName parses an entry file name: "plumb-<version>[+LEFT[-DONE]].conf",
// with "_" for "+" in the version. The name gives the version and the boot
// counter; Slot, PartUUID and Cmdline are in the content (Parse).
func ParseName(name string) (Entry, error) {
	id, ok := strings.CutSuffix(name, ".conf")
	if !ok {
		return Entry{}, fmt.Errorf("boot entry %q: expected a name ending in .conf", name)
	}
	var e Entry
	if i := strings.LastIndexByte(id, '+'); i >= 0 {
		counter := id[i+1:]
		left, done, hasDone := strings.Cut(counter, "-")
		var err error
		if e.TriesLeft, err = parseCount(left); err == nil && hasDone {
			e.TriesDone, err = parseCount(done)
		}
		if err != nil {
			return Entry{}, fmt.Errorf("boot entry %q: boot counter: expected +LEFT[-DONE] with decimal numbers, got %q", name, "+"+counter)
		}
		e.Counting = true
		id = id[:i]
	}
	v, ok := strings.CutPrefix(id, prefix)
	v = strings.ReplaceAll(v, "_", "+")
	if !ok || !release.ValidVersion(v) {
		return Entry{}, fmt.Errorf("boot entry %q: expected a name like \"plumb-1.2.3.conf\" (a release version, \"+\" written as \"_\")", name)
	}
	e.Version = v
	return e, nil
}

// Parse parses an entry from its file name and content. The slot is the
// options' plumb.slot=, else the slot of the linux path; the command line
// is what the options hold after plumb.slot=.
func Parse(name, content string) (Entry, error) {
	e, err := ParseName(name)
	if err != nil {
		return Entry{}, err
	}
	var linux, efi string
	for _, line := range strings.Split(content, "\n") {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		val = strings.TrimSpace(val)
		switch key {
		case "options":
			f := strings.Fields(val)
			for i, o := range f {
				if u, ok := strings.CutPrefix(o, "root=PARTUUID="); ok {
					e.PartUUID = u
				}
				if s, ok := strings.CutPrefix(o, "plumb.slot="); ok {
					e.Slot = disklayout.Slot(s)
					rest := f[i+1:]
					var verity []string
					for len(rest) > 0 && strings.HasPrefix(rest[0], "plumb.verity") {
						verity, rest = append(verity, rest[0]), rest[1:]
					}
					e.Verity, e.Cmdline = strings.Join(verity, " "), strings.Join(rest, " ")
				}
			}
		case "linux":
			linux = val
		case "efi":
			efi = val
		}
	}
	for _, s := range disklayout.Slots {
		if efi != "" && efi == SlotUKI(s) {
			e.UKI = true
			if e.Slot == "" {
				e.Slot = s
			}
		}
		if e.Slot == "" && linux == SlotKernel(s) {
			e.Slot = s
		}
	}
	return e, nil
}

func parseCount(s string) (int, error) {
	if s == "" || len(s) > 4 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a count: %q", s)
	}
	return strconv.Atoi(s)
}

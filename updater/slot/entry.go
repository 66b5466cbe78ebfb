package slot

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/plumb-os/plumb/format/bootentry"
)

// TrialTries is how many boots a freshly installed slot gets.
const TrialTries = 3

// Entry is a Plumb boot entry on the ESP and its boot-counter state.
type Entry struct {
	File      string // file name in EntriesDir ("plumb-2.0.0+2-1.conf")
	ID        string // the name without counter and ".conf" ("plumb-2.0.0")
	Version   string // "2.0.0"
	Slot      string // "a", "b"; "" when the entry names none
	Committed bool   // no boot counter
	TriesLeft int    // boot counter: tries left (trial entries)
	TriesDone int    // boot counter: tries done (trial entries)
}

// Trial tells whether the entry is a trial that systemd-boot will still try.
func (e Entry) Trial() bool { return !e.Committed && e.TriesLeft > 0 }

// Exhausted tells whether the entry is a trial out of tries ("+0-N"):
// systemd-boot sorts it last, so the other slot boots.
func (e Entry) Exhausted() bool { return !e.Committed && e.TriesLeft == 0 }

// ParseEntryName parses a Plumb entry file name with Boot Loader
// Specification boot counting: "plumb-<version>[+LEFT[-DONE]].conf". Slot
// is left empty: it is in the file's content.
func ParseEntryName(name string) (Entry, error) {
	id, ok := strings.CutSuffix(name, ".conf")
	if !ok {
		return Entry{}, fmt.Errorf("boot entry %q: expected a name ending in .conf", name)
	}
	e := Entry{File: name, Committed: true}
	if i := strings.LastIndexByte(id, '+'); i >= 0 {
		counter := id[i+1:]
		left, done, hasDone := strings.Cut(counter, "-")
		var err error
		if e.TriesLeft, err = parseCount(left); err != nil {
			return Entry{}, fmt.Errorf("boot entry %q: boot counter: expected +LEFT[-DONE] with decimal numbers, got %q", name, "+"+counter)
		}
		if hasDone {
			if e.TriesDone, err = parseCount(done); err != nil {
				return Entry{}, fmt.Errorf("boot entry %q: boot counter: expected +LEFT[-DONE] with decimal numbers, got %q", name, "+"+counter)
			}
		}
		e.Committed = false
		id = id[:i]
	}
	v, ok := strings.CutPrefix(id, "plumb-")
	if !ok || !versionOK(v) {
		return Entry{}, fmt.Errorf("boot entry %q: expected a name like \"plumb-1.2.3.conf\"", name)
	}
	e.ID, e.Version = id, v
	return e, nil
}

func parseCount(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a count: %q", s)
	}
	return strconv.Atoi(s)
}

func versionOK(v string) bool {
	return v != "" && !strings.ContainsAny(v, "/+ \t\n") && strings.Trim(v, ".-") == v
}

// slotOfEntry finds the slot in an entry's content: plumb.slot= on the
// options line, else the /plumb/<slot>/ kernel path.
func slotOfEntry(content string) string {
	var linux, efi string
	for _, line := range strings.Split(content, "\n") {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch key {
		case "options":
			for _, f := range strings.Fields(val) {
				if s, ok := strings.CutPrefix(f, "plumb.slot="); ok {
					return s
				}
			}
		case "linux":
			linux = strings.TrimSpace(val)
		case "efi":
			efi = strings.TrimSpace(val)
		}
	}
	for _, s := range []string{"a", "b"} {
		if linux == bootentry.SlotKernel(s) || efi == bootentry.SlotUKI(s) {
			return s
		}
	}
	return ""
}

// Entries lists the Plumb boot entries on the ESP, in name order. Files
// that are not Plumb entries ("plumb-<version>....conf") are skipped.
func (d *Device) Entries() ([]Entry, error) {
	names, err := d.ESP.ReadDir(bootentry.EntriesDir)
	if err != nil {
		return nil, fmt.Errorf("listing boot entries: %w", err)
	}
	var out []Entry
	for _, n := range names {
		e, err := ParseEntryName(n)
		if err != nil {
			continue
		}
		b, err := d.ESP.ReadFile(path.Join(bootentry.EntriesDir, n))
		if err != nil {
			return nil, fmt.Errorf("reading boot entry %s: %w", n, err)
		}
		e.Slot = slotOfEntry(string(b))
		out = append(out, e)
	}
	return out, nil
}

// Commit makes the running slot's entry for version permanent by renaming
// it without its boot counter ("plumb-2.0.0+2-1.conf" -> "plumb-2.0.0.conf").
// It is idempotent, and refuses an entry of a slot that is not running.
func (d *Device) Commit(version string) error {
	entries, err := d.Entries()
	if err != nil {
		return fmt.Errorf("committing %s: %w", version, err)
	}
	found := false
	for _, e := range entries {
		if e.Version != version {
			continue
		}
		found = true
		if e.Slot != d.Running {
			return fmt.Errorf("committing %s: entry %s boots slot %q, but slot %q is running", version, e.File, e.Slot, d.Running)
		}
		if e.Committed {
			continue
		}
		to := e.ID + ".conf"
		if d.DryRun {
			d.log().Info("dry run: not committing", "entry", e.File, "to", to)
			continue
		}
		if err := d.ESP.Rename(path.Join(bootentry.EntriesDir, e.File), path.Join(bootentry.EntriesDir, to)); err != nil {
			return fmt.Errorf("committing %s: %w", version, err)
		}
		d.log().Info("slot committed", "slot", e.Slot, "version", version, "entry", to, "tries_done", e.TriesDone)
	}
	if !found {
		return fmt.Errorf("committing %s: no boot entry plumb-%s*.conf in %s", version, version, bootentry.EntriesDir)
	}
	return nil
}

// Discard removes every entry of slot (after a failed trial, or before
// overwriting the slot). It refuses the running slot.
func (d *Device) Discard(slot string) error {
	if slot == d.Running {
		return fmt.Errorf("discarding slot %s: %w", slot, ErrRunningSlot)
	}
	entries, err := d.Entries()
	if err != nil {
		return fmt.Errorf("discarding slot %s: %w", slot, err)
	}
	for _, e := range entries {
		if e.Slot != slot {
			continue
		}
		if d.DryRun {
			d.log().Info("dry run: not removing entry", "entry", e.File)
			continue
		}
		if err := d.ESP.Remove(path.Join(bootentry.EntriesDir, e.File)); err != nil {
			return fmt.Errorf("discarding slot %s: %w", slot, err)
		}
		d.log().Info("entry removed", "slot", slot, "entry", e.File)
	}
	return nil
}

// Exhaust marks the running slot's uncommitted entry for version as out of
// tries ("plumb-2.0.0+2-1.conf" -> "plumb-2.0.0+0-1.conf"), so the next boot
// falls back to the other slot at once instead of retrying a release whose
// health checks failed.
func (d *Device) Exhaust(version string) error {
	entries, err := d.Entries()
	if err != nil {
		return fmt.Errorf("giving up on %s: %w", version, err)
	}
	for _, e := range entries {
		if e.Version != version || e.Committed || e.Slot != d.Running || e.TriesLeft == 0 {
			continue
		}
		to := fmt.Sprintf("%s+0-%d.conf", e.ID, max(e.TriesDone, 1))
		if d.DryRun {
			d.log().Info("dry run: not exhausting", "entry", e.File, "to", to)
			continue
		}
		if err := d.ESP.Rename(path.Join(bootentry.EntriesDir, e.File), path.Join(bootentry.EntriesDir, to)); err != nil {
			return fmt.Errorf("giving up on %s: %w", version, err)
		}
		d.log().Info("trial entry out of tries", "entry", to)
	}
	return nil
}

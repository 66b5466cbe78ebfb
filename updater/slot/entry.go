package slot

import (
	"fmt"
	"path"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
)

// Entries lists the Plumb boot entries on the ESP, in name order. Files
// that are not Plumb entries ("plumb-<version>....conf") are skipped.
func (d *Device) Entries() ([]bootentry.Entry, error) {
	names, err := d.ESP.ReadDir(bootentry.EntriesDir)
	if err != nil {
		return nil, fmt.Errorf("listing boot entries: %w", err)
	}
	var out []bootentry.Entry
	for _, n := range names {
		if _, err := bootentry.ParseName(n); err != nil {
			continue
		}
		b, err := d.ESP.ReadFile(path.Join(bootentry.EntriesDir, n))
		if err != nil {
			return nil, fmt.Errorf("reading boot entry %s: %w", n, err)
		}
		e, err := bootentry.Parse(n, string(b))
		if err != nil {
			continue
		}
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
			return fmt.Errorf("committing %s: entry %s boots slot %q, but slot %q is running", version, e.Name(), e.Slot, d.Running)
		}
		if e.Committed() {
			continue
		}
		c := e
		c.Counting = false
		to := c.Name()
		if d.DryRun {
			d.log().Info("dry run: not committing", "entry", e.Name(), "to", to)
			continue
		}
		if err := d.ESP.Rename(path.Join(bootentry.EntriesDir, e.Name()), path.Join(bootentry.EntriesDir, to)); err != nil {
			return fmt.Errorf("committing %s: %w", version, err)
		}
		d.log().Info("slot committed", "slot", e.Slot, "version", version, "entry", to, "tries_done", e.TriesDone)
	}
	if !found {
		return fmt.Errorf("committing %s: no boot entry %s*.conf in %s", version, bootentry.Entry{Version: version}.ID(), bootentry.EntriesDir)
	}
	return nil
}

// Discard removes every entry of slot (after a failed trial, or before
// overwriting the slot). It refuses the running slot.
func (d *Device) Discard(slot disklayout.Slot) error {
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
			d.log().Info("dry run: not removing entry", "entry", e.Name())
			continue
		}
		if err := d.ESP.Remove(path.Join(bootentry.EntriesDir, e.Name())); err != nil {
			return fmt.Errorf("discarding slot %s: %w", slot, err)
		}
		d.log().Info("entry removed", "slot", slot, "entry", e.Name())
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
		if e.Version != version || e.Committed() || e.Slot != d.Running || e.TriesLeft == 0 {
			continue
		}
		x := e
		x.TriesLeft, x.TriesDone = 0, max(e.TriesDone, 1)
		to := x.Name()
		if d.DryRun {
			d.log().Info("dry run: not exhausting", "entry", e.Name(), "to", to)
			continue
		}
		if err := d.ESP.Rename(path.Join(bootentry.EntriesDir, e.Name()), path.Join(bootentry.EntriesDir, to)); err != nil {
			return fmt.Errorf("giving up on %s: %w", version, err)
		}
		d.log().Info("trial entry out of tries", "entry", to)
	}
	return nil
}

package agent

import (
	"time"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/updater/release"
)

func (w Want) now() time.Time {
	if w.Now.IsZero() {
		return time.Now()
	}
	return w.Now
}

// HeldBack says why the newest release for the device that is newer than
// chosen (nil: than the running one) was not chosen because of its rollout
// control (halted, paused, outside its wave); "" when none was held back.
// plumbd shows it in its status ("no update (2.0.0 halted …)").
func HeldBack(targets []Target, w Want, chosen *Candidate) string {
	floor := w.Running
	if chosen != nil {
		floor = chosen.Facts.Version
	}
	var best *release.Facts
	var why string
	for _, t := range targets {
		if len(t.Custom) == 0 {
			continue
		}
		f, err := release.Parse(t.Custom)
		if err != nil || f.Kind != release.KindFull || f.Hardware != w.Hardware || f.Channel != w.Channel ||
			t.Path != release.TargetPath(f.Hardware, f.Version) || w.Bad[f.Version] ||
			recipe.CompareVersions(f.Version, floor) <= 0 {
			continue
		}
		ok, reason := f.Admits(w.DeviceID, w.Group, w.now())
		if ok {
			continue
		}
		if best == nil || recipe.CompareVersions(f.Version, best.Version) > 0 {
			best, why = f, reason
		}
	}
	return why
}

// withoutControl is f without its rollout control, as kept in the state
// file: it serves the attested commit only, and an agent older than waves,
// which may read the file after a rollback, refuses keys it does not know.
func withoutControl(f *release.Facts) *release.Facts {
	kept := *f
	kept.Control = release.Control{}
	return &kept
}

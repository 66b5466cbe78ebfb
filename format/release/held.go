package release

import "time"

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
	var best *Facts
	var why string
	for _, t := range targets {
		if len(t.Custom) == 0 {
			continue
		}
		f, err := Parse(t.Custom)
		if err != nil || f.Kind != KindFull || f.Hardware != w.Hardware || f.Channel != w.Channel ||
			t.Path != TargetPath(f.Hardware, f.Version) || w.Bad[f.Version] ||
			CompareVersions(f.Version, floor) <= 0 {
			continue
		}
		ok, reason := f.Admits(w.DeviceID, w.Group, w.now())
		if ok {
			continue
		}
		if best == nil || CompareVersions(f.Version, best.Version) > 0 {
			best, why = f, reason
		}
	}
	return why
}

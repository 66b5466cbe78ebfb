package rollout

import (
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
)

// The operator's rollout changes, for tufrepo.Repo.Rollout; plumb rollout
// and the fleet service's page use the same ones.

// Pause stops devices from starting the release.
func Pause(c *release.Control, _ time.Time) error { c.Paused = true; return nil }

// Resume lifts a pause and a halt.
func Resume(c *release.Control, _ time.Time) error { c.Paused, c.Halted = false, nil; return nil }

// Halt halts the release with reason, by actor, at the repository's clock.
func Halt(reason, actor string) tufrepo.RolloutEdit {
	return func(c *release.Control, now time.Time) error {
		c.Halted = &release.Halt{Reason: reason, At: now, By: actor}
		return nil
	}
}

// Step is one wave to set: Percent from At, or from the repository's clock
// plus After when At is zero.
type Step struct {
	Percent int
	At      time.Time
	After   time.Duration
}

// SetWaves replaces group's waves ("" the default schedule) with steps.
func SetWaves(group string, steps []Step) tufrepo.RolloutEdit {
	return func(c *release.Control, now time.Time) error {
		ws := make([]release.Wave, len(steps))
		for i, s := range steps {
			at := s.At
			if at.IsZero() {
				at = now.Add(s.After)
			}
			ws[i] = release.Wave{Percent: s.Percent, At: at.UTC()}
		}
		c.SetWaves(group, ws)
		return nil
	}
}

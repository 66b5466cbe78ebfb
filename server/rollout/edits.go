package rollout

import (
	"fmt"
	"strconv"
	"strings"
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

// ParseStep parses a wave step P%@WHEN: P% of a group's devices from
// WHEN, which is "now" (or nothing), "+DURATION" (+24h, +3d) or an RFC 3339
// time. Bad input gets one line naming what was expected.
func ParseStep(s string) (Step, error) {
	bad := func(why string) error {
		return fmt.Errorf("wave %q: expected P%%@WHEN like 10%%@now, 50%%@+24h or 100%%@2026-12-24T08:00:00Z: %s", s, why)
	}
	p, when, _ := strings.Cut(s, "@")
	n, err := strconv.Atoi(strings.TrimSuffix(p, "%"))
	if err != nil || n < 0 || n > 100 {
		return Step{}, bad("percentage " + strconv.Quote(p) + " is not 0..100")
	}
	st := Step{Percent: n}
	switch {
	case when == "" || when == "now":
	case strings.HasPrefix(when, "+"):
		d, err := parseDays(when[1:])
		if err != nil || d < 0 {
			return Step{}, bad("duration " + strconv.Quote(when) + " is not like +24h or +3d")
		}
		st.After = d
	default:
		t, err := time.Parse(time.RFC3339, when)
		if err != nil {
			return Step{}, bad("time " + strconv.Quote(when) + " is not RFC 3339")
		}
		st.At = t
	}
	return st, nil
}

// parseDays is time.ParseDuration that also takes whole days ("3d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n > 3650 {
			return 0, fmt.Errorf("bad days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

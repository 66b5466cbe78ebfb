package release

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"time"
)

// Control is the rollout control part of the release facts (release.md,
// "Rollout control"): the wave schedule, a pause and a halt. It is written
// by plumb rollout and by the halt controller, and read by the agent, which
// decides alone whether it may start the release (Admits). Older agents
// ignore these keys and read only Facts.Rollout, which the publisher keeps
// at or below what the waves admit (LegacyPercent).
type Control struct {
	// Waves are percent steps on a schedule, per device group. Empty:
	// Facts.Rollout alone decides.
	Waves []Wave `json:"waves,omitempty"`
	// Paused stops devices from starting the release until it is resumed.
	Paused bool `json:"paused,omitempty"`
	// Halted stops devices from starting the release for good (until an
	// operator resumes it), with why and by whom.
	Halted *Halt `json:"halted,omitempty"`
}

// Wave admits Percent of the devices of Group (all devices without a
// schedule of their own when Group is "") from time At.
type Wave struct {
	Percent int       `json:"percent"`
	At      time.Time `json:"at"`
	Group   string    `json:"group,omitempty"`
}

// Halt records why a release was halted.
type Halt struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	By     string    `json:"by"` // who or what halted it: an operator, "plumb rollout watch …"
}

// Caps on the control facts (the metadata that carries them is bounded by
// the client, but one release must not crowd out the others).
const (
	MaxWaves      = 64
	MaxReasonSize = 512
)

// Validate checks the control facts: at most MaxWaves waves, percentages
// 0..100, group names like hardware names, and per group a schedule whose
// times strictly increase and whose percentages never fall (a device once
// admitted stays admitted).
func (c *Control) Validate() error {
	if len(c.Waves) > MaxWaves {
		return fmt.Errorf("release facts: waves: expected at most %d waves, got %d", MaxWaves, len(c.Waves))
	}
	last := map[string]Wave{}
	for i, w := range c.Waves {
		if w.Percent < 0 || w.Percent > 100 {
			return fmt.Errorf("release facts: waves[%d].percent: expected a percentage 0..100, got %d", i, w.Percent)
		}
		if w.At.IsZero() {
			return fmt.Errorf("release facts: waves[%d].at: expected a time like \"2026-01-02T15:04:05Z\", got none", i)
		}
		if w.Group != "" && !validName(w.Group) {
			return fmt.Errorf("release facts: waves[%d].group: expected a group name like \"canary\", got %q", i, w.Group)
		}
		if p, ok := last[w.Group]; ok {
			if !w.At.After(p.At) {
				return fmt.Errorf("release facts: waves[%d].at: expected a time after %s (the group's previous wave), got %s", i, p.At.Format(time.RFC3339), w.At.Format(time.RFC3339))
			}
			if w.Percent < p.Percent {
				return fmt.Errorf("release facts: waves[%d].percent: expected at least %d (the group's previous wave), got %d", i, p.Percent, w.Percent)
			}
		}
		last[w.Group] = w
	}
	if h := c.Halted; h != nil {
		if h.Reason == "" || len(h.Reason) > MaxReasonSize {
			return fmt.Errorf("release facts: halted.reason: expected 1..%d bytes, got %d", MaxReasonSize, len(h.Reason))
		}
		if h.By == "" || len(h.By) > MaxReasonSize {
			return fmt.Errorf("release facts: halted.by: expected 1..%d bytes, got %d", MaxReasonSize, len(h.By))
		}
		if h.At.IsZero() {
			return fmt.Errorf("release facts: halted.at: expected the time of the halt, got none")
		}
	}
	return nil
}

// schedule returns the waves that apply to group, oldest first: the
// group's own, or when it has none (or group is "") the default ones.
func (c *Control) schedule(group string) []Wave {
	pick := func(g string) []Wave {
		var ws []Wave
		for _, w := range c.Waves {
			if w.Group == g {
				ws = append(ws, w)
			}
		}
		return ws
	}
	ws := pick(group)
	if group != "" && len(ws) == 0 {
		ws = pick("")
	}
	slices.SortStableFunc(ws, func(a, b Wave) int { return a.At.Compare(b.At) })
	return ws
}

// Percent is the share of group's devices the schedule admits at now:
// the percentage of the group's last wave that has begun (0 before the
// first). legacy (Facts.Rollout) applies when there are no waves at all.
func (c *Control) Percent(legacy int, group string, now time.Time) int {
	if len(c.Waves) == 0 {
		return legacy
	}
	p := 0
	for _, w := range c.schedule(group) {
		if !w.At.After(now) {
			p = w.Percent
		}
	}
	return p
}

// LegacyPercent is the value the publisher writes into Facts.Rollout at
// now, for agents that know no waves (they have no group): 0 while paused
// or halted, else what the default schedule admits at now. Waves never
// fall, so an older agent admits a subset of what a newer one admits.
func (c *Control) LegacyPercent(legacy int, now time.Time) int {
	if c.Paused || c.Halted != nil {
		return 0
	}
	return c.Percent(legacy, "", now)
}

// Bucket is the device's place, 0..99, in the rollouts of version:
// fnv32a(deviceID + "/" + version) mod 100. A device is inside a rollout
// of p percent when its bucket is below p.
func Bucket(deviceID, version string) int {
	h := fnv.New32a()
	h.Write([]byte(deviceID + "/" + version))
	return int(h.Sum32() % 100)
}

// Admits reports whether the device (its id and group, "" for none) may
// start installing the release at now, by its own clock. When it may not,
// why says so in one line ("halted: …", "paused", "not in its wave …").
func (f *Facts) Admits(deviceID, group string, now time.Time) (ok bool, why string) {
	c := &f.Control
	switch {
	case c.Halted != nil:
		return false, fmt.Sprintf("%s halted at %s by %s: %s", f.Version, c.Halted.At.Format(time.RFC3339), c.Halted.By, c.Halted.Reason)
	case c.Paused:
		return false, f.Version + " paused"
	}
	p := c.Percent(f.Rollout, group, now)
	if p >= 100 || Bucket(deviceID, f.Version) < p {
		return true, ""
	}
	why = fmt.Sprintf("%s: not in its rollout yet (%d%% admitted", f.Version, p)
	if group != "" {
		why += fmt.Sprintf(" in group %q", group)
	}
	if next := c.next(group, now); next != nil {
		why += fmt.Sprintf(", %d%% from %s", next.Percent, next.At.Format(time.RFC3339))
	}
	return false, why + ")"
}

// next is the group's first wave after now, if any.
func (c *Control) next(group string, now time.Time) *Wave {
	for _, w := range c.schedule(group) {
		if w.At.After(now) {
			return &w
		}
	}
	return nil
}

// SetWaves replaces group's waves with ws (their Group is set to group),
// keeping the other groups' waves, and orders all waves by group then time.
func (c *Control) SetWaves(group string, ws []Wave) {
	kept := slices.DeleteFunc(slices.Clone(c.Waves), func(w Wave) bool { return w.Group == group })
	for _, w := range ws {
		w.Group = group
		kept = append(kept, w)
	}
	slices.SortStableFunc(kept, func(a, b Wave) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), a.At.Compare(b.At))
	})
	c.Waves = kept
}

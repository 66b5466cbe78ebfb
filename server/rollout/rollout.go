// Package rollout owns the halt controller: the part of the fleet service
// that stops a bad release by itself.
//
// A Watcher looks, at each Check, at every full release of a repository
// that is not halted yet: it asks Outcomes how many devices tried the
// release and how many of them failed it (a rollback, a failed health
// check, a failed attested commit). When at least Policy.MinSample devices
// tried it and the failed share passes Policy.Threshold, it halts the
// release through TUF (tufrepo.Repo.Rollout: halted, with the reason and
// who halted it, re-signed into targets, snapshot and timestamp) and
// records the halt with Audit. Devices pull the halt like any other
// metadata; those that have not started the release do not start it.
//
// Check also keeps the legacy rollout percentage of releases with waves in
// step with the default wave (release.Control.LegacyPercent), so agents
// that know no waves follow the schedule, one Check behind.
//
// Run calls Check on an interval until its context ends. A Watcher is not
// safe for concurrent use; two Watchers on one repository are safe (the
// repository's lock orders their changes, and a halt is applied once).
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
)

// Outcomes gives the per-release outcomes the halt decision needs. The
// fleet service's store (server/store) implements it from each device's
// history of authenticated status reports.
type Outcomes interface {
	// ReleaseOutcomes returns how many devices of hardware tried version
	// (downloaded, installed, booted or committed it, or failed it) and
	// how many of those failed it.
	ReleaseOutcomes(ctx context.Context, hardware, version string) (tried, failed int, err error)
}

// Auditor records an action in the audit log.
type Auditor interface {
	Record(ctx context.Context, e Entry) error
}

// Entry is one audit record.
type Entry struct {
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`   // who or what acted
	Action  string    `json:"action"`  // "rollout.halt", "rollout.set", "rollout.pause", "rollout.resume"
	Release string    `json:"release"` // hardware/version
	Detail  string    `json:"detail,omitempty"`
}

// Policy says when a release is halted.
type Policy struct {
	// Threshold is the failed share of the devices that tried a release,
	// 0 < Threshold < 1, above which it is halted.
	Threshold float64
	// MinSample is how many devices must have tried the release before
	// the share counts (at least 1).
	MinSample int
}

// Default policy: halt above 20% failures once 20 devices tried.
const (
	DefaultThreshold = 0.20
	DefaultMinSample = 20
)

// Validate checks the policy.
func (p Policy) Validate() error {
	if !(p.Threshold > 0 && p.Threshold < 1) {
		return fmt.Errorf("failure threshold: expected a share between 0%% and 100%%, got %g%%", p.Threshold*100)
	}
	if p.MinSample < 1 {
		return fmt.Errorf("minimum sample: expected at least 1 device, got %d", p.MinSample)
	}
	return nil
}

// Watcher is the halt controller of one repository.
type Watcher struct {
	// Dir is the repository directory (plumb repo init's DIR). The
	// targets, snapshot and timestamp keys must be in DIR/keys.
	Dir         string
	RepoOptions tufrepo.Options
	Outcomes    Outcomes
	Policy      Policy
	// Actor names the controller in halts and audit records; default
	// "plumb rollout watch".
	Actor string
	Audit Auditor      // nil: halts are only logged
	Log   *slog.Logger // nil discards
}

// Halted is a halt a Check made.
type Halted struct {
	Hardware, Version string
	Tried, Failed     int
	Reason            string
}

func (w *Watcher) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

func (w *Watcher) actor() string {
	if w.Actor == "" {
		return "plumb rollout watch"
	}
	return w.Actor
}

// Check looks at every release once and halts those whose failure rate
// passed the threshold. It returns the halts it made; an error for one
// release does not stop the others (they are joined).
func (w *Watcher) Check(ctx context.Context) ([]Halted, error) {
	if err := w.Policy.Validate(); err != nil {
		return nil, err
	}
	repo, err := tufrepo.Open(w.Dir, w.RepoOptions)
	if err != nil {
		return nil, err
	}
	rels, err := repo.Releases()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if w.RepoOptions.Now != nil {
		now = w.RepoOptions.Now()
	}
	var halts []Halted
	var errs []error
	for _, rel := range rels {
		f := rel.Facts
		if f.Kind != release.KindFull || rel.Path != release.TargetPath(f.Hardware, f.Version) || f.Halted != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return halts, err
		}
		name := f.Hardware + "/" + f.Version
		tried, failed, err := w.Outcomes.ReleaseOutcomes(ctx, f.Hardware, f.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("outcomes of %s: %w", name, err))
			continue
		}
		if tried >= w.Policy.MinSample && float64(failed) > w.Policy.Threshold*float64(tried) {
			h, err := w.halt(ctx, repo, f, tried, failed)
			if err != nil {
				errs = append(errs, fmt.Errorf("halting %s: %w", name, err))
				continue
			}
			halts = append(halts, h)
			continue
		}
		if len(f.Waves) > 0 && f.Control.LegacyPercent(f.Rollout, now) != f.Rollout {
			// A wave began: older agents read only rollout.
			nf, err := repo.Rollout(ctx, f.Hardware, f.Version, func(*release.Control, time.Time) error { return nil })
			if err != nil {
				errs = append(errs, fmt.Errorf("advancing %s: %w", name, err))
				continue
			}
			w.log().Info("rollout advanced", "release", name, "rollout", nf.Rollout)
		}
	}
	return halts, errors.Join(errs...)
}

func (w *Watcher) halt(ctx context.Context, repo *tufrepo.Repo, f release.Facts, tried, failed int) (Halted, error) {
	reason := fmt.Sprintf("failure rate %.0f%% (%d of %d devices that tried it) passed the threshold %.0f%% (minimum sample %d)",
		100*float64(failed)/float64(tried), failed, tried, 100*w.Policy.Threshold, w.Policy.MinSample)
	h := Halted{Hardware: f.Hardware, Version: f.Version, Tried: tried, Failed: failed, Reason: reason}
	var at time.Time
	_, err := repo.Rollout(ctx, f.Hardware, f.Version, func(c *release.Control, now time.Time) error {
		if c.Halted == nil { // halted meanwhile by someone else: keep theirs
			c.Halted = &release.Halt{Reason: reason, At: now, By: w.actor()}
		}
		at = now
		return nil
	})
	if err != nil {
		return h, err
	}
	name := f.Hardware + "/" + f.Version
	w.log().Warn("release halted", "release", name, "tried", tried, "failed", failed, "reason", reason)
	if w.Audit != nil {
		if err := w.Audit.Record(ctx, Entry{Time: at, Actor: w.actor(), Action: "rollout.halt", Release: name, Detail: reason}); err != nil {
			return h, fmt.Errorf("halted, but the audit record failed: %w", err)
		}
	}
	return h, nil
}

// Run calls Check every interval (and once at once) until ctx ends,
// logging what it did and its errors.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) error {
	if err := w.Policy.Validate(); err != nil {
		return err
	}
	if interval <= 0 {
		return fmt.Errorf("watch interval: expected a positive duration, got %s", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := w.Check(ctx); err != nil && ctx.Err() == nil {
			w.log().Error("rollout check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

package tufrepo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/errclass"
)

// ErrNoRelease is returned by Rollout when the repository has no full
// release of that hardware and version. errors.Is(err, ErrInvalid) holds
// for it too.
var ErrNoRelease = errclass.New(ErrInvalid, errors.New("no such release"))

// RolloutEdit changes a release's rollout control in place. now is the
// repository's clock (Options.Now), for halt times and "now" waves.
type RolloutEdit func(c *release.Control, now time.Time) error

// Rollout applies edit to the rollout control of the release
// <hardware>/<version> (release.md, "Rollout control") and re-signs
// targets, snapshot and timestamp: never root, whose keys stay offline.
//
// The control keys (waves, paused, halted) and the legacy rollout
// percentage (release.Control.LegacyPercent: what the default wave admits
// now, 0 while paused or halted) are written into the custom field of every
// target of the release (the full image, its delta bundles and its
// installer files), keeping every other key of those fields as it is. A
// release published with only a rollout percentage gets it as its first
// default wave, so that pause and resume keep it.
//
// An edit that changes nothing signs nothing. On any failure the repository
// is left as it was. It returns the release's new facts.
func (r *Repo) Rollout(ctx context.Context, hardware, version string, edit RolloutEdit) (facts *release.Facts, err error) {
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	fullPath := release.TargetPath(hardware, version)
	full, ok := st.targets.Signed.Targets[fullPath]
	if !ok || full.Custom == nil {
		return nil, fmt.Errorf("%w: %s/%s: expected a published release (HARDWARE/VERSION); published: %s",
			ErrNoRelease, hardware, version, publishedList(st))
	}
	f, err := release.Parse(*full.Custom)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", fullPath, err)
	}
	now := r.now()
	c := f.Control
	c.Waves = slices.Clone(c.Waves)
	if len(c.Waves) == 0 {
		c.Waves = []release.Wave{{Percent: f.Rollout, At: now}}
	}
	if err := edit(&c, now); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, invalid("%s/%s: %w", hardware, version, err)
	}
	legacy := c.LegacyPercent(f.Rollout, now)

	changed := false
	prefix := hardware + "/" + version + "/"
	for _, p := range slices.Sorted(maps.Keys(st.targets.Signed.Targets)) {
		tf := st.targets.Signed.Targets[p]
		if !strings.HasPrefix(p, prefix) || tf.Custom == nil {
			continue
		}
		custom, err := withControl(*tf.Custom, c, legacy)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", p, err)
		}
		if jsonEqual(*tf.Custom, custom) {
			continue
		}
		if _, err := release.Parse(custom); err != nil {
			return nil, fmt.Errorf("target %s: %w", p, err)
		}
		raw := json.RawMessage(custom)
		tf.Custom = &raw
		changed = true
	}
	nf := *f
	nf.Control, nf.Rollout = c, legacy
	if !changed {
		return &nf, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	signers, err := r.signers(st.root, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP)
	if err != nil {
		return nil, err
	}
	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed rollout change: %w", rerr))
		}
	}()
	changedRoles := map[string]bool{metadata.TARGETS: true, metadata.SNAPSHOT: true, metadata.TIMESTAMP: true}
	if err := r.signAndWrite(ctx, t, st, changedRoles, signers); err != nil {
		return nil, err
	}
	r.opts.Log.Info("rollout changed", "hardware", hardware, "version", version, "rollout", legacy,
		"waves", len(c.Waves), "paused", c.Paused, "halted", c.Halted != nil, "targets_version", st.targets.Signed.Version)
	return &nf, nil
}

// withControl returns custom with the rollout control keys replaced by c's
// and rollout set to legacy; other keys are kept as they are.
func withControl(custom json.RawMessage, c release.Control, legacy int) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(custom, &m); err != nil {
		return nil, fmt.Errorf("release facts: %w", err)
	}
	set := func(key string, v any, keep bool) error {
		if !keep {
			delete(m, key)
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		m[key] = b
		return nil
	}
	if err := errors.Join(
		set("rollout", legacy, true),
		set("waves", c.Waves, len(c.Waves) > 0),
		set("paused", c.Paused, c.Paused),
		set("halted", c.Halted, c.Halted != nil),
	); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// publishedList names the full releases, for an error message.
func publishedList(st *state) string {
	var out []string
	for p, tf := range st.targets.Signed.Targets {
		if tf.Custom == nil {
			continue
		}
		if f, err := release.Parse(*tf.Custom); err == nil && f.Kind == release.KindFull && p == release.TargetPath(f.Hardware, f.Version) {
			out = append(out, f.Hardware+"/"+f.Version)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	slices.Sort(out)
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("… %d more", len(out)-20))
	}
	return strings.Join(out, ", ")
}

// FindRelease resolves a release given as "HARDWARE/VERSION", or as
// "VERSION" with hardware (which may be "" when exactly one hardware has
// that version).
func (r *Repo) FindRelease(spec, hardware string) (hw, version string, err error) {
	if h, v, ok := strings.Cut(spec, "/"); ok {
		if hardware != "" && hardware != h {
			return "", "", invalid("release %q names hardware %s, but --hardware says %s", spec, h, hardware)
		}
		if h == "" || v == "" || strings.Contains(v, "/") {
			return "", "", invalid("release %q: expected HARDWARE/VERSION or VERSION", spec)
		}
		return h, v, nil
	}
	if spec == "" {
		return "", "", invalid("release: expected HARDWARE/VERSION or VERSION, got nothing")
	}
	if hardware != "" {
		return hardware, spec, nil
	}
	rels, err := r.Releases()
	if err != nil {
		return "", "", err
	}
	var hws []string
	for _, rel := range rels {
		if rel.Facts.Kind == release.KindFull && rel.Facts.Version == spec {
			hws = append(hws, rel.Facts.Hardware)
		}
	}
	switch len(hws) {
	case 1:
		return hws[0], spec, nil
	case 0:
		return "", "", fmt.Errorf("%w: version %s: expected a published version", ErrNoRelease, spec)
	}
	return "", "", invalid("version %s is published for %s: give HARDWARE/%s or --hardware", spec, strings.Join(hws, ", "), spec)
}

// keepControl gives f, about to be published again, the rollout control of
// the published release of the same hardware and version (set by plumb
// rollout or the halt controller), and the legacy rollout it implies: a
// publish again never lifts a halt or a pause, nor replaces a schedule.
func (r *Repo) keepControl(st *state, f *release.Facts) {
	tf, ok := st.targets.Signed.Targets[release.TargetPath(f.Hardware, f.Version)]
	if !ok || tf.Custom == nil {
		return
	}
	old, err := release.Parse(*tf.Custom)
	if err != nil || (len(old.Waves) == 0 && !old.Paused && old.Halted == nil) {
		return
	}
	f.Control = old.Control
	f.Rollout = old.Control.LegacyPercent(f.Rollout, r.now())
}

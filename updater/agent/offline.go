package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/plumb-os/plumb/format/medium"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/media"
)

// ErrMediumRefused marks a medium that failed a check (no export on it,
// metadata that does not verify, a tampered target, nothing for this
// device). The slot is untouched when it is returned.
var ErrMediumRefused = errors.New("update medium refused")

// Offline opens the repository copy in dir (a mounted medium) with the
// device's trusted root and metadata, judging expiry at ref
// (docs/offline.md). The command line sets it to fetch.NewLocal.
type Offline func(dir string, ref time.Time) (Repository, error)

// Repository is what the agent needs of a TUF client (*fetch.Client).
type Repository = repository

// MediumOpener mounts the medium dev read-only and returns its directory.
type MediumOpener func(dev string) (dir string, unmount func() error, err error)

// UpdateFrom installs the newest release for this device found on the
// update medium mounted at dir (source names it in the state and the
// log), through the same verification, slot, trial and commit path as a
// network update. It returns whether it installed one; a refusal wraps
// ErrMediumRefused and leaves the slots as they were.
func (a *Agent) UpdateFrom(ctx context.Context, dir, source string) (bool, error) {
	installed, result, err := a.updateFrom(ctx, dir, source)
	m := MediumResult{Device: source, Time: time.Now().UTC(), Result: result}
	if err != nil {
		m.Result, m.Refused = err.Error(), errors.Is(err, ErrMediumRefused)
	}
	if n := len(a.state.Media); a.recorded && n > 0 {
		a.state.Media = a.state.Media[:n-1] // this call's "installing": its outcome replaces it
	}
	a.recorded = false
	a.state.addMedium(m)
	if serr := a.save(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		a.log().Warn("update medium refused", "device", source, "reason", m.Result)
	} else {
		a.log().Info("update medium read", "device", source, "result", result)
	}
	return installed, err
}

func (a *Agent) updateFrom(ctx context.Context, dir, source string) (bool, string, error) {
	refuse := func(format string, args ...any) (bool, string, error) {
		return false, "", fmt.Errorf("%w: %s: %s", ErrMediumRefused, source, fmt.Sprintf(format, args...))
	}
	if err := media.Check(dir); err != nil {
		return refuse("%v", err)
	}
	if a.Offline == nil {
		return false, "", errors.New("this agent cannot read update media (no offline client)")
	}
	repo, err := a.Offline(dir, a.state.LastOnline)
	if err != nil {
		return refuse("%v", err)
	}
	if c, ok := repo.(io.Closer); ok {
		defer c.Close() // the medium is unmounted after this
	}
	if err := repo.Refresh(ctx); err != nil {
		return refuse("metadata: %v", err)
	}
	targets, err := repo.Targets()
	if err != nil {
		return refuse("metadata: %v", err)
	}
	// The signed metadata lists every release of the repository; the
	// medium carries the files of some. Only those can be chosen.
	var ts []release.Target
	for _, t := range targets {
		if fi, err := os.Stat(mediumFile(dir, t.Path, t.SHA256)); err == nil && fi.Mode().IsRegular() {
			ts = append(ts, release.Target{Path: t.Path, Custom: t.Custom, Length: t.Length, SHA256: t.SHA256})
		}
	}
	want := release.Want{
		Hardware: a.Config.Hardware, Channel: a.Config.Channel,
		Running: a.Facts.Release.Version, Bad: a.state.BadSet(), DeviceID: a.DeviceID,
		AnyRollout: true, // a person brought this release to this device
	}
	cand, _ := release.Choose(ts, want)
	if cand == nil {
		return refuse("%s", nothingFor(ts, want))
	}
	// Read the file once before touching the slot: a tampered target is
	// refused with the slot as it was. (The install verifies it again as
	// it copies.)
	if err := verifyFile(mediumFile(dir, cand.Path, cand.SHA256), cand.Length, cand.SHA256); err != nil {
		return refuse("target %s: %v", cand.Path, err)
	}
	dc, _ := release.ChooseDelta(ts, cand, want)
	if dc != nil {
		if err := verifyFile(mediumFile(dir, dc.Path, dc.SHA256), dc.Length, dc.SHA256); err != nil {
			a.log().Warn("delta on the medium not used", "target", dc.Path, "err", err)
			dc = nil
		}
	}
	if a.state.Phase == PhaseEntry && a.state.Version == cand.Facts.Version {
		return false, "installed " + cand.Facts.Version + ", waiting for a reboot", nil
	}
	a.log().Info("installing from update medium", "device", source, "version", cand.Facts.Version)
	net := a.Repo
	a.Repo = repo
	defer func() { a.Repo = net }()
	a.state.Source = "medium " + source
	// Recorded before the install: it ends with a reboot when the policy
	// says so, and the state must say where the release came from.
	a.state.addMedium(MediumResult{Device: source, Time: time.Now().UTC(), Result: "installing " + cand.Facts.Version})
	a.recorded = true
	if err := a.install(ctx, cand, dc); err != nil {
		if a.state.Phase != PhaseDownloading && a.state.Phase != PhaseApplying {
			a.state.Phase = PhaseIdle
		}
		if errors.Is(err, fetch.ErrVerification) {
			return refuse("%v", err)
		}
		return false, "", err
	}
	return true, "installed " + cand.Facts.Version, nil
}

// mediumFile is where an export keeps a target's bytes.
func mediumFile(dir, target, sha string) string { return medium.TargetFile(dir, target, sha) }

// verifyFile checks a file's length and sha256 against the trusted ones.
func verifyFile(p string, length int64, sha string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, length+1))
	if err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	if n != length {
		return fmt.Errorf("%w: %d bytes, expected %d", fetch.ErrVerification, n, length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("%w: sha256 mismatch: expected %s, got %s", fetch.ErrVerification, sha, got)
	}
	return nil
}

// nothingFor says why no release on the medium is for this device.
func nothingFor(ts []release.Target, w release.Want) string {
	var other, ours []string
	for _, t := range ts {
		f, err := release.Parse(t.Custom)
		if err != nil || f.Kind != release.KindFull {
			continue
		}
		switch {
		case f.Hardware != w.Hardware:
			other = append(other, f.Hardware+" "+f.Version)
		case f.Channel != w.Channel:
			other = append(other, f.Hardware+" "+f.Version+" (channel "+f.Channel+")")
		default:
			ours = append(ours, f.Version)
		}
	}
	slices.SortFunc(ours, release.CompareVersions)
	switch {
	case len(ours) > 0:
		v := ours[len(ours)-1]
		if w.Bad[v] {
			return fmt.Sprintf("its release %s failed on this device before", v)
		}
		return fmt.Sprintf("its newest release for %s is %s, not newer than the running %s", w.Hardware, v, w.Running)
	case len(other) > 0:
		return fmt.Sprintf("made for other hardware: it holds %s; this device is %s on channel %s", strings.Join(other, ", "), w.Hardware, w.Channel)
	}
	return "it holds no release files"
}

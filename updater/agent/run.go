package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/slot"
)

// repository is what the agent needs of the TUF client; *fetch.Client.
type repository interface {
	Refresh(ctx context.Context) error
	Targets() ([]fetch.Target, error)
	DownloadFile(ctx context.Context, targetPath string, f *os.File, done int64, progress io.Writer) (int64, error)
	// RecordRelease and RecordedRelease keep the newest release committed
	// in the fsync'd rollback record (fetch.FloorFile), apart from
	// state.json: a lost state file must not let an older release in.
	RecordRelease(version string) error
	RecordedRelease() (string, error)
}

// WakeSignal is the wake-up channel as the agent sees it; *wake.Channel.
type WakeSignal interface {
	C() <-chan struct{}
	Up() bool
}

// Agent updates one device. Call Settle once after boot, then Poll (or Run,
// which polls forever). Not safe for concurrent use.
type Agent struct {
	Config    *config.Config
	Facts     device.Facts // the running system
	Repo      repository
	Device    *slot.Device
	StatePath string // DataDir/state.json
	DeviceID  string
	Log       *slog.Logger
	// Reboot restarts the machine; default Device.Reboot. Tests replace it.
	Reboot func() error
	// Workloads, when set with Config.Workloads, runs the group's
	// containers once the OS is committed.
	Workloads Workloads
	// OnSave, when set, sees the state after every save (status reports);
	// it must not block.
	OnSave func(*State)
	// MeasuredBoot checks, for Config.Commit "attested", that this boot's
	// measurements (the TPM's event log replayed against its PCRs, and
	// plumb-init's PCR 15 log) match the reference values in facts, the
	// release facts of the running release. It returns an error naming
	// the checks that failed. Nil with "attested": every trial fails.
	MeasuredBoot func(ctx context.Context, facts *release.Facts) error
	// Attest, if set, runs after Settle (so after every boot and every
	// commit): it sends evidence to the verifier and returns its verdict.
	Attest func(ctx context.Context) *Attestation

	// Offline and OpenMedium, when set, let the agent update from media
	// (offline.go); ScanMedia lists the media inserted.
	Offline    Offline
	OpenMedium MediumOpener
	ScanMedia  func() []string
	// MountSlot mounts a slot's partition read-only for the post-install
	// hook and returns where; nil runs the hook without the new root.
	MountSlot MediumOpener
	// Locks are the application locks (the local API takes them); nil:
	// none.
	Locks *Locks

	// Requests, when set, carries the local API's requests (field_run.go).
	Requests chan Request

	// Wake, when set (Config.Wake), is the wake-up channel: a nudge on
	// Wake.C() makes Run poll at once, and while Wake.Up() Run polls
	// every Config.Wake.PollInterval() instead of Config.Poll. It never
	// installs anything by itself.
	Wake WakeSignal

	seen     map[string]bool // media already read, by device
	recorded bool            // UpdateFrom recorded "installing" for the medium it reads

	state      *State
	appliedSum string // sha256 of the workload manifest applied last
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// State returns the agent's current state (loaded by Settle).
func (a *Agent) State() *State { return a.state }

func (a *Agent) save() error {
	if err := a.state.Save(a.StatePath); err != nil {
		return fmt.Errorf("saving agent state: %w", err)
	}
	if a.OnSave != nil {
		a.OnSave(a.state)
	}
	return nil
}

// Settle runs once after boot. When the running slot was booted on trial it
// runs the health checks and commits it, or, when they fail, records the
// release as bad and reboots into the previous slot. When an update was in
// flight and the device came back on its old slot, the new release failed
// to boot: it is recorded as bad.
func (a *Agent) Settle(ctx context.Context) error {
	st, err := LoadState(a.StatePath)
	if err != nil {
		a.log().Error("agent state unreadable, starting over", "err", err)
		st = &State{Phase: PhaseIdle}
	}
	a.state = st
	running := a.Facts.Release.Version
	entries, err := a.Device.Entries()
	if err != nil {
		return err
	}
	var mine *bootentry.Entry
	for i, e := range entries {
		if e.Slot == a.Device.Running && e.Version == running {
			mine = &entries[i]
		}
	}
	if mine != nil && mine.Committed() {
		// The committed running release joins the rollback record (the
		// first boot of an installed image, or a commit whose record was
		// cut short).
		if err := a.recordRelease(running); err != nil {
			return err
		}
	}
	switch {
	case mine != nil && !mine.Committed():
		a.state.Phase, a.state.Version, a.state.Slot = PhaseTrial, running, a.Device.Running
		if err := a.save(); err != nil {
			return err
		}
		dataMounted := a.Facts.Boot != nil && a.Facts.Boot.DataMounted
		if err := Check(ctx, dataMounted, a.Config.Health); err != nil {
			return a.failTrial(running, err)
		}
		if a.Config.Commit == config.CommitAttested {
			if err := a.checkMeasuredBoot(ctx, running); err != nil {
				return a.failTrial(running, err)
			}
		}
		if err := a.runHook(ctx, a.Config.Hooks, config.StageFirstBoot, running, a.hookEnv(running)...); err != nil {
			return a.failTrial(running, err)
		}
		if err := a.Device.Commit(running); err != nil {
			return err
		}
		a.state.Phase, a.state.Event = PhaseCommitted, "committed "+running
		a.state.Waiting, a.state.Reason = "", ""
		if err := a.save(); err != nil {
			return err
		}
		a.log().Info("release committed", "version", running, "slot", a.Device.Running)
		return a.recordRelease(running)
	case mine != nil && mine.Committed() && a.state.Version == running && a.state.Phase != PhaseCommitted && a.state.Phase != PhaseIdle:
		// Power was lost between the commit's rename and saving it.
		a.state.Phase, a.state.Event = PhaseCommitted, "committed "+running
		if err := a.save(); err != nil {
			return err
		}
		a.log().Info("release committed", "version", running, "slot", a.Device.Running)
		return a.recordRelease(running)
	case a.state.Phase == PhaseEntry && a.state.Version != running && pendingTrial(entries, a.state.Version):
		// Installed, its trial entry untried: waiting for the reboot the
		// policy allows.
		a.log().Info("installed release waiting for a reboot", "version", a.state.Version, "slot", a.state.Slot)
		return nil
	case (a.state.Phase == PhaseRebooting || a.state.Phase == PhaseTrial || a.state.Phase == PhaseEntry) && a.state.Version != "" && a.state.Version != running:
		// We rebooted into a new release but run the old one: its trial
		// boots ran out (or it never started plumbd).
		why := "boot failed"
		if prev, ok := a.state.Bad[a.state.Version]; ok {
			why = prev // the trial boot said why (a failed health check)
		}
		failed, failedSlot := a.state.Version, a.state.Slot
		rb := a.rollbackDetail(failed, string(failedSlot), why)
		a.saveRollback(rb) // a report: before the state, so that its save reports it
		a.state.MarkBad(failed, why)
		a.state.Event = fmt.Sprintf("rolled back from %s: %s", failed, why)
		a.state.Phase, a.state.Version, a.state.Slot = PhaseIdle, "", ""
		// Durable first, then announced: a power cut right after the log
		// line must not make the next boot roll back again.
		if err := a.save(); err != nil {
			return err
		}
		if err := a.Device.Discard(failedSlot); err != nil {
			a.log().Error("removing the failed entry", "err", err)
		}
		a.log().Warn("rolled back", "from", failed, "to", running, "reason", why, "detail", rb.Detail)
		if err := a.runHook(ctx, a.Config.Hooks, config.StageRollback, running, append(a.hookEnv(running), "PLUMB_FAILED_VERSION="+failed)...); err != nil {
			a.log().Error("rollback hook failed", "err", err)
		}
		return nil
	case (a.state.Phase == PhaseDownloading || a.state.Phase == PhaseApplying) && a.state.Version != running:
		// The next poll resumes the download from the bytes recorded.
		a.log().Info("resuming interrupted download", "version", a.state.Version, "bytes", a.state.Bytes)
		return nil
	case a.state.Phase == PhaseReady && a.state.Version != running && a.state.Slot == a.Device.Inactive():
		// Verified on the inactive slot, held by the install policy:
		// it stays ready across reboots (Run installs it when allowed).
		a.log().Info("release ready on the inactive slot", "version", a.state.Version, "waiting", a.state.Waiting)
		return nil
	case a.state.Phase != PhaseIdle && a.state.Phase != PhaseCommitted:
		// An update was cut short before its reboot: start it again.
		a.log().Info("resuming interrupted update", "phase", a.state.Phase, "version", a.state.Version)
		a.state.Phase = PhaseIdle
		return a.save()
	}
	return nil
}

// checkMeasuredBoot is the attested commit's check: the trial boot's
// measurements against the reference values of the release it runs.
func (a *Agent) checkMeasuredBoot(ctx context.Context, running string) error {
	fail := func(err error) error { return &HealthError{Check: "attestation", Err: err} }
	f := a.state.Facts
	switch {
	case f == nil || f.Version != running:
		return fail(fmt.Errorf("no release facts for %s kept from its installation: cannot compare its measurements", running))
	case f.Measured == nil:
		return fail(fmt.Errorf("release %s was published without reference values (measured)", running))
	case a.MeasuredBoot == nil:
		return fail(errors.New("this agent cannot check its measured boot (no TPM support)"))
	}
	if err := a.MeasuredBoot(ctx, f); err != nil {
		return fail(err)
	}
	a.log().Info("measured boot matches the release's reference values", "version", running)
	return nil
}

// pendingTrial reports whether version has a trial entry that no boot has
// tried yet.
func pendingTrial(entries []bootentry.Entry, version string) bool {
	for _, e := range entries {
		if e.Version == version && !e.Committed() && e.TriesDone == 0 && e.TriesLeft > 0 {
			return true
		}
	}
	return false
}

// failTrial records a failed health check and reboots into the previous
// slot (the trial entry is removed by the old slot's Settle).
func (a *Agent) failTrial(version string, cause error) error {
	a.state.MarkBad(version, cause.Error())
	a.state.Event = fmt.Sprintf("rolled back from %s: %v", version, cause)
	a.state.Phase = PhaseRebooting
	if err := a.save(); err != nil {
		return err
	}
	a.log().Error("trial failed, rebooting into the previous slot", "version", version, "err", cause)
	// No more tries: the next boot is the previous slot's.
	if err := a.Device.Exhaust(version); err != nil {
		a.log().Error("marking the trial entry out of tries", "err", err)
	}
	return a.reboot()
}

func (a *Agent) reboot() error {
	if a.Reboot != nil {
		return a.Reboot()
	}
	return a.Device.Reboot()
}

// Poll refreshes the metadata and, if a newer release is there, installs it
// into the inactive slot and reboots into it. It returns whether it
// installed one.
func (a *Agent) Poll(ctx context.Context) (bool, error) {
	a.state.LastCheck = time.Now().UTC()
	if err := a.Repo.Refresh(ctx); err != nil {
		a.state.LastResult = err.Error()
		a.save()
		return false, err
	}
	a.state.LastOnline = a.state.LastCheck
	targets, err := a.Repo.Targets()
	if err != nil {
		return false, err
	}
	ts := make([]release.Target, len(targets))
	for i, t := range targets {
		ts[i] = release.Target{Path: t.Path, Custom: t.Custom, Length: t.Length, SHA256: t.SHA256}
	}
	recorded, err := a.Repo.RecordedRelease()
	if err != nil {
		return false, err
	}
	want := release.Want{
		Hardware: a.Config.Hardware, Channel: a.Config.Channel,
		Running: a.Facts.Release.Version, Bad: a.state.BadSet(), Recorded: recorded, DeviceID: a.DeviceID,
		Group: a.Config.Group, Now: time.Now(),
	}
	cand, skipped := release.Choose(ts, want)
	for p, why := range skipped {
		a.log().Warn("target skipped", "target", p, "err", why)
	}
	held := release.HeldBack(ts, want, cand)
	if held != "" {
		a.log().Info("release held back by its rollout", "reason", held)
	}
	if cand == nil {
		a.state.LastResult = "no update"
		if held != "" {
			a.state.LastResult = "no update (" + held + ")"
		}
		if err := a.save(); err != nil {
			return false, err
		}
		// The OS is current: now the workloads (an OS update always
		// goes first; the containers keep running meanwhile).
		return false, a.reconcileWorkloads(ctx)
	}
	if a.state.Phase == PhaseEntry && a.state.Version == cand.Facts.Version {
		a.state.LastResult = "installed " + cand.Facts.Version + ", waiting for a reboot"
		return false, a.save()
	}
	if a.state.Phase == PhaseReady && a.state.Version == cand.Facts.Version {
		a.state.Facts = cand.Facts // the approval may have been published since
		return a.resumeReady(ctx)
	}
	if a.deferredByLocks("install of " + cand.Facts.Version) {
		return false, a.save()
	}
	a.state.Source = "network"
	dc, why := release.ChooseDelta(ts, cand, want)
	if dc == nil {
		a.log().Debug("no delta", "version", cand.Facts.Version, "reason", why)
	}
	if err := a.install(ctx, cand, dc); err != nil {
		a.state.LastResult = err.Error()
		if a.state.Phase != PhaseDownloading && a.state.Phase != PhaseApplying { // resumed at the next poll
			a.state.Phase = PhaseIdle
		}
		a.save()
		return false, err
	}
	if a.state.Phase == PhaseReady { // held by the install policy
		return false, nil
	}
	a.state.LastResult = "installed " + cand.Facts.Version
	return true, nil
}

// install is steps 3–6 of the update: stream into the inactive slot (from
// the delta bundle dc when there is one, else or on its failure the full
// image c), verify, copy the boot files, write the trial entry last,
// reboot.
func (a *Agent) install(ctx context.Context, c, dc *release.Candidate) error {
	to := a.Device.Inactive()
	log := a.log().With("version", c.Facts.Version, "slot", to)
	st := a.state
	resuming := (st.Phase == PhaseDownloading || st.Phase == PhaseApplying) && st.Version == c.Facts.Version && st.Slot == to
	if !resuming || (st.Target != c.Path && (dc == nil || st.Target != dc.Path)) {
		resuming = false
		st.Fetched, st.Fallback, st.Method = 0, "", ""
		os.Remove(a.bundleFile()) // of an update given up; its room is needed
	}
	if !resuming {
		if err := a.runHook(ctx, a.Config.Hooks, config.StagePreInstall, c.Facts.Version, a.hookEnv(c.Facts.Version)...); err != nil {
			a.discard(c.Facts.Version, err)
			return err
		}
	}
	st.Facts = withoutControl(c.Facts) // the measured reference values, for an attested commit
	start := time.Now()
	var done int64
	var fallback error
	switch {
	case resuming && st.Target == c.Path:
		done = st.Bytes // written and synced before the interruption
	case dc != nil:
		if resuming && st.Target == dc.Path {
			done = st.Bytes // of the bundle
			if st.Phase == PhaseApplying {
				done = dc.Length // downloaded: re-hashed, not fetched again
			}
		}
		f, n, err := a.installDelta(ctx, c, dc, to, done)
		if err == nil {
			defer f.Close()
			log.Info("slot written from delta and verified", "target", dc.Path, "bytes", n, "fetched", st.Fetched,
				"full", c.Length, "seconds", time.Since(start).Seconds())
			return a.installed(ctx, c, f, n)
		}
		if ctx.Err() != nil {
			return err // the next start resumes the delta
		}
		fallback = err
		st.Fallback = err.Error()
		done = 0
	}

	st.Phase, st.Version, st.Target, st.Slot, st.Method = PhaseDownloading, c.Facts.Version, c.Path, to, MethodFull
	st.Bytes, st.Total = done, c.Facts.Rootfs.Size
	if err := a.save(); err != nil {
		return err
	}
	if fallback != nil { // saved first, then announced
		log.Warn("delta not used, installing the full image", "target", dc.Path, "reason", fallback)
	}
	// The slot about to be overwritten must not stay bootable.
	if err := a.Device.Discard(to); err != nil {
		return err
	}
	f, err := a.Device.OpenInactive(c.Facts.Rootfs.Size)
	if err != nil {
		return err
	}
	defer f.Close()
	log.Info("downloading release", "target", c.Path, "bytes", c.Facts.Rootfs.Size, "resume_at", done)
	saver := &progressSaver{a: a, f: f, every: 2 * time.Second, fetched: true}
	n, err := a.Repo.DownloadFile(ctx, c.Path, f, done, saver)
	if err != nil {
		// Keep what is on disk for the next attempt.
		if f.Sync() == nil {
			st.Bytes = n
		}
		return fmt.Errorf("installing %s into slot %s: %w", c.Facts.Version, to, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("installing %s into slot %s: %w", c.Facts.Version, to, err)
	}
	log.Info("slot written and verified", "bytes", n, "fetched", st.Fetched, "seconds", time.Since(start).Seconds())
	return a.installed(ctx, c, f, n)
}

// installed finishes an install once the inactive slot f holds the
// verified image of n bytes: boot files, trial entry, reboot.
func (a *Agent) installed(ctx context.Context, c *release.Candidate, f *os.File, n int64) error {
	a.state.Phase, a.state.Bytes, a.state.Total = PhaseVerified, n, n
	if err := a.save(); err != nil {
		return err
	}
	if a.holdReady(c.Facts) {
		return nil
	}
	return a.finishInstall(ctx, c.Facts, f.Name(), n)
}

// finishInstall runs the post-install hook, copies the boot files of the
// verified image (the inactive slot's device, path) and writes the trial
// entry, then reboots per policy.
func (a *Agent) finishInstall(ctx context.Context, facts *release.Facts, path string, n int64) error {
	to := a.Device.Inactive()
	if err := a.postInstall(ctx, facts.Version, path); err != nil {
		a.discard(facts.Version, err)
		return err
	}
	img, err := os.Open(path)
	if err != nil {
		return err
	}
	defer img.Close()
	part := a.Device.Slots[to]
	if facts.Verity != nil {
		// The tree goes after the image through a writable handle; the
		// check reads it back before any boot entry is written.
		w, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("installing %s into slot %s: %w", facts.Version, to, err)
		}
		capacity, err := w.Seek(0, io.SeekEnd)
		if err == nil {
			err = a.Device.FormatVerity(w, capacity, n, facts)
		}
		if err == nil {
			err = w.Sync()
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("installing %s into slot %s: %w", facts.Version, to, err)
		}
	}
	if facts.UKI != nil {
		if err := a.installUKI(ctx, facts, string(to), part.PARTUUID); err != nil {
			return err
		}
	} else if err := a.Device.InstallBoot(ctx, img, n, facts, part.PARTUUID); err != nil {
		return err
	}
	a.state.Phase = PhaseEntry
	a.state.Waiting, a.state.Reason = "", ""
	if err := a.save(); err != nil {
		return err
	}
	return a.rebootPerPolicy(ctx, facts.Version)
}

// rebootPerPolicy reboots into the installed release now, when the
// maintenance window opens, or leaves it to a person (manual).
func (a *Agent) rebootPerPolicy(ctx context.Context, version string) error {
	p, err := config.ParseReboot(a.Config.Reboot)
	if err != nil {
		return err
	}
	wait := p.Wait(time.Now())
	if wait < 0 {
		a.state.Event = "installed " + version + ": waiting for a manual reboot"
		a.log().Info("installed release waits for a manual reboot", "version", version)
		return a.save()
	}
	if wait > 0 {
		a.state.Event = fmt.Sprintf("installed %s: rebooting in the maintenance window at %s", version, time.Now().Add(wait).UTC().Format(time.RFC3339))
		a.save()
		a.log().Info("waiting for the maintenance window", "version", version, "in", wait.Round(time.Second))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	if err := a.waitLocks(ctx, "reboot into "+version); err != nil {
		return err
	}
	a.state.Phase = PhaseRebooting
	a.state.Waiting, a.state.Reason = "", ""
	if err := a.save(); err != nil {
		return err
	}
	a.log().Info("rebooting into the new release", "version", version)
	return a.reboot()
}

// Run settles, then polls every Config.Poll with ±10% jitter, backing off
// (doubling up to 16× the interval) while polls fail. It returns when ctx
// ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Settle(ctx); err != nil {
		a.log().Error("settling after boot", "err", err)
	}
	if a.Attest != nil && a.state.Phase != PhaseRebooting {
		a.state.Attestation = a.Attest(ctx)
		if err := a.save(); err != nil {
			a.log().Error("saving the attestation verdict", "err", err)
		}
	}
	if err := a.StartWorkloads(ctx); err != nil {
		a.log().Error("starting the applied workloads", "err", err)
	}
	base := time.Duration(a.Config.Poll)
	failed := base // the wait after a failed check, doubled each time
	for {
		if a.state.Phase == PhaseReady {
			if _, err := a.resumeReady(ctx); err != nil {
				a.log().Error("installing the ready release", "err", err)
			}
			if a.state.Phase == PhaseRebooting {
				return nil
			}
		}
		installed, err := a.Poll(ctx)
		next := a.pollInterval()
		switch {
		case errors.Is(err, context.Canceled):
			return nil
		case err != nil:
			a.log().Error("update check failed", "err", err)
			failed = min(failed*2, 16*base)
			next = failed
		case installed && a.state.Phase == PhaseRebooting:
			return nil // rebooting
		default:
			failed = base
		}
		if a.wait(ctx, jitter(next)) {
			return nil // rebooting, or ctx ended
		}
	}
}

// pollInterval is the time until the next check: Config.Wake's while the
// wake-up channel is up, else Config.Poll.
func (a *Agent) pollInterval() time.Duration {
	if a.Wake != nil && a.Config.Wake != nil && a.Wake.Up() {
		return a.Config.Wake.PollInterval()
	}
	return time.Duration(a.Config.Poll)
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// progressSaver counts downloaded bytes into the state and, at most every
// interval, syncs the slot and saves the count: plumbd status shows the
// progress, and a download cut by a power loss resumes from bytes that are
// on disk. (The fetch client re-hashes the prefix anyway.)
type progressSaver struct {
	a       *Agent
	f       *os.File // the file written; nil in tests that only count
	every   time.Duration
	last    time.Time
	fetched bool // the bytes come from the network: count them in Fetched
}

func (p *progressSaver) Write(b []byte) (int, error) {
	p.a.state.Bytes += int64(len(b))
	if p.fetched {
		p.a.state.Fetched += int64(len(b))
	}
	if p.a.state.Total > 0 && p.a.state.Bytes > p.a.state.Total {
		p.a.state.Bytes = p.a.state.Total // a restart from 0 counts bytes again
	}
	if time.Since(p.last) >= p.every {
		p.last = time.Now()
		if p.f != nil {
			if err := p.f.Sync(); err != nil {
				return len(b), nil // not durable: do not record it
			}
		}
		if err := p.a.save(); err != nil {
			p.a.log().Warn("saving download progress", "err", err)
		}
	}
	return len(b), nil
}

// recordRelease raises the rollback record's release to the one just
// committed.
func (a *Agent) recordRelease(version string) error {
	if err := a.Repo.RecordRelease(version); err != nil {
		return fmt.Errorf("recording committed release %s: %w", version, err)
	}
	return nil
}

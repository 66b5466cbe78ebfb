package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
)

// Request is something the local API asks of the running agent. The agent
// handles requests between polls, one at a time, on its own goroutine,
// and answers on Reply (buffered by the sender).
type Request struct {
	Kind  string // ReqCheck, ReqApprove or ReqUpdateFrom
	Arg   string // the version to approve; the medium to update from
	Reply chan<- error
}

// Request kinds.
const (
	ReqCheck      = "check"       // poll the repository now
	ReqApprove    = "approve"     // a local user approves the ready release (Arg: its version, or "")
	ReqUpdateFrom = "update-from" // Arg: a mounted medium's directory or a block device
)

// mediaEvery is how often the agent looks for inserted update media.
const mediaEvery = 3 * time.Second

// hookEnv is the environment every hook gets besides PATH and PLUMB_STAGE
// (docs/hooks.md).
func (a *Agent) hookEnv(version string) []string {
	return []string{
		"PLUMB_VERSION=" + version,
		"PLUMB_RUNNING=" + a.Facts.Release.Version,
		"PLUMB_DEVICE_ID=" + a.DeviceID,
	}
}

// discard gives up a release before its reboot: recorded as bad with
// why, the inactive slot made unbootable.
func (a *Agent) discard(version string, why error) {
	a.state.MarkBad(version, why.Error())
	a.state.Event = fmt.Sprintf("discarded %s: %v", version, why)
	a.state.Phase, a.state.Waiting, a.state.Reason = PhaseIdle, "", ""
	if err := a.save(); err != nil {
		a.log().Error("saving the discarded release", "err", err)
	}
	if err := a.Device.Discard(a.Device.Inactive()); err != nil {
		a.log().Error("discarding the inactive slot", "err", err)
	}
	a.log().Warn("release discarded", "version", version, "reason", why)
}

// postInstall runs the post-install hook with the new slot (the device
// file path) mounted read-only at PLUMB_NEW_ROOT.
func (a *Agent) postInstall(ctx context.Context, version, path string) error {
	if a.Config.Hooks.Stage(config.StagePostInstall) == nil {
		return nil
	}
	env := a.hookEnv(version)
	if a.MountSlot != nil {
		dir, unmount, err := a.MountSlot(path)
		if err != nil {
			return &HookError{Stage: config.StagePostInstall, Path: a.Config.Hooks.PostInstall.Run, Err: fmt.Errorf("mounting the new slot: %w", err)}
		}
		defer unmount()
		env = append(env, "PLUMB_NEW_ROOT="+dir)
	}
	return a.runHook(ctx, a.Config.Hooks, config.StagePostInstall, version, env...)
}

// installGate says what holds a verified release back under the install
// policy ("" when nothing does).
func (a *Agent) installGate(f *release.Facts) (wait, reason string) {
	if p, ok := a.Config.InstallWindow(); ok {
		if d := p.Wait(time.Now()); d > 0 {
			return WaitWindow, fmt.Sprintf("downloaded and verified; the install policy allows installing only in the window %s UTC, which opens at %s",
				a.Config.Install, time.Now().Add(d).UTC().Format(time.RFC3339))
		}
		return "", ""
	}
	if a.Config.Install != config.InstallDownloadOnly {
		return "", ""
	}
	if a.state.Approved == f.Version || f.Approved.Covers(a.DeviceID, a.Config.Group) {
		return "", ""
	}
	who := "--device " + a.DeviceID
	if a.Config.Group != "" {
		who += " or --group " + a.Config.Group
	}
	return WaitApproval, fmt.Sprintf("downloaded and verified; install: download-only waits for an approval of %s: plumb approve REPO --hardware %s --version %s %s, or plumbd approve on the device",
		f.Version, f.Hardware, f.Version, who)
}

// holdReady keeps a verified release as ready when the install policy
// holds it back; it reports whether it did.
func (a *Agent) holdReady(f *release.Facts) bool {
	wait, reason := a.installGate(f)
	if wait == "" {
		return false
	}
	changed := a.state.Phase != PhaseReady || a.state.Waiting != wait
	a.state.Phase, a.state.Waiting, a.state.Reason = PhaseReady, wait, reason
	a.state.LastResult = "ready: " + f.Version
	if err := a.save(); err != nil {
		a.log().Error("saving the ready release", "err", err)
	}
	if changed {
		a.log().Info("release ready", "version", f.Version, "waiting", wait, "reason", reason)
	}
	return true
}

// resumeReady installs the ready release once nothing holds it back any
// more; it reports whether it installed it.
func (a *Agent) resumeReady(ctx context.Context) (bool, error) {
	st := a.state
	if st.Facts == nil || st.Facts.Version != st.Version || st.Slot != a.Device.Inactive() {
		a.log().Warn("ready release no longer matches the slots, starting over", "version", st.Version)
		st.Phase, st.Waiting, st.Reason = PhaseIdle, "", ""
		return false, a.save()
	}
	if a.holdReady(st.Facts) {
		return false, nil
	}
	if a.deferredByLocks("install of " + st.Version) {
		return false, a.save()
	}
	part := a.Device.Slots[a.Device.Inactive()]
	a.log().Info("installing the ready release", "version", st.Version, "approved", st.Approved == st.Version || st.Facts.Approved.Covers(a.DeviceID, a.Config.Group))
	if err := a.finishInstall(ctx, st.Facts, part.Device, st.Total); err != nil {
		return false, err
	}
	return true, nil
}

// deferredByLocks reports whether application locks hold back what (an
// install), recording them as the reason.
func (a *Agent) deferredByLocks(what string) bool {
	held, _ := a.Locks.Held()
	a.state.Locks = held
	if len(held) == 0 {
		if a.state.Waiting == WaitLock {
			a.state.Waiting, a.state.Reason = "", ""
		}
		return false
	}
	reason := what + " deferred: " + describeLocks(held)
	if a.state.Reason != reason {
		a.log().Info("deferred by application lock", "what", what, "locks", describeLocks(held))
	}
	a.state.Waiting, a.state.Reason = WaitLock, reason
	return true
}

// waitLocks waits until no application lock is held (each ends when
// released or at its maximum hold time).
func (a *Agent) waitLocks(ctx context.Context, what string) error {
	for {
		held, changed := a.Locks.Held()
		a.state.Locks = held
		if len(held) == 0 {
			return nil
		}
		if a.deferredByLocks(what) {
			if err := a.save(); err != nil {
				return err
			}
		}
		next := held[0].Expires
		for _, li := range held {
			if li.Expires.Before(next) {
				next = li.Expires
			}
		}
		t := time.NewTimer(time.Until(next) + 10*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
		case <-t.C:
			a.log().Info("application lock reached its maximum hold time", "locks", describeLocks(held))
		}
		t.Stop()
	}
}

// wait sleeps d between polls while serving requests and looking for
// update media. It returns true when Run must end (ctx ended, or the
// device reboots) and false to poll now.
func (a *Agent) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	// The wake-up channel: a nudge polls now. A long wait (the channel
	// was up) is cut short once the channel is down and a normal poll is
	// due.
	var wakeC <-chan struct{}
	var downC <-chan time.Time
	if a.Wake != nil {
		wakeC = a.Wake.C()
		if base := time.Duration(a.Config.Poll); d > base {
			tick := time.NewTicker(base)
			defer tick.Stop()
			downC = tick.C
		}
	}
	var mediaC <-chan time.Time
	if a.ScanMedia != nil && a.OpenMedium != nil {
		tick := time.NewTicker(mediaEvery)
		defer tick.Stop()
		mediaC = tick.C
	}
	for {
		_, lockChanged := a.Locks.Held()
		select {
		case <-ctx.Done():
			return true
		case <-timer.C:
			return false
		case <-wakeC:
			a.log().Info("woken: the repository's timestamp changed, polling now")
			return false
		case <-downC:
			if !a.Wake.Up() {
				return false
			}
		case <-mediaC:
			if a.checkMedia(ctx) {
				return true
			}
		case <-lockChanged:
			if a.state.Waiting == WaitLock {
				return false
			}
		case r := <-a.Requests:
			err := a.handle(ctx, r)
			if r.Reply != nil {
				r.Reply <- err
			}
			if a.state.Phase == PhaseRebooting {
				return true
			}
			if r.Kind != ReqUpdateFrom {
				return false
			}
		}
	}
}

// handle serves one request of the local API.
func (a *Agent) handle(ctx context.Context, r Request) error {
	switch r.Kind {
	case ReqCheck:
		return nil
	case ReqApprove:
		v := r.Arg
		switch {
		case a.state.Phase != PhaseReady && v == "":
			return errors.New("approve: no release is ready (plumbd status: update.phase)")
		case v == "":
			v = a.state.Version
		case a.state.Phase == PhaseReady && v != a.state.Version:
			return fmt.Errorf("approve: %s is not the ready release (%s is)", v, a.state.Version)
		}
		a.state.Approved = v
		a.log().Info("release approved on the device", "version", v)
		return a.save()
	case ReqUpdateFrom:
		dir, unmount := r.Arg, func() error { return nil }
		if fi, err := os.Stat(r.Arg); err == nil && fi.Mode().IsRegular() {
			return fmt.Errorf("update --from %s: a file, expected a block device or a directory: write the image to a stick, or mount it (mount -o loop,ro %s DIR) and give DIR", r.Arg, r.Arg)
		}
		if a.OpenMedium != nil && isDevice(r.Arg) {
			var err error
			if dir, unmount, err = a.OpenMedium(r.Arg); err != nil {
				return err
			}
		}
		defer unmount()
		_, err := a.UpdateFrom(ctx, dir, r.Arg)
		return err
	}
	return fmt.Errorf("request: expected check, approve or update-from, got %q", r.Kind)
}

// checkMedia reads each update medium inserted since the last look; it
// reports whether the device now reboots.
func (a *Agent) checkMedia(ctx context.Context) bool {
	present := map[string]bool{}
	for _, dev := range a.ScanMedia() {
		present[dev] = true
		if a.seen[dev] {
			continue
		}
		if a.seen == nil {
			a.seen = map[string]bool{}
		}
		a.seen[dev] = true
		a.log().Info("update medium found", "device", dev)
		dir, unmount, err := a.OpenMedium(dev)
		if err != nil {
			a.state.addMedium(MediumResult{Device: dev, Time: time.Now().UTC(), Result: err.Error(), Refused: true})
			a.save()
			a.log().Warn("update medium refused", "device", dev, "reason", err.Error())
			continue
		}
		a.UpdateFrom(ctx, dir, dev)
		if err := unmount(); err != nil {
			a.log().Warn("unmounting the update medium", "device", dev, "err", err)
		}
		if a.state.Phase == PhaseRebooting {
			return true
		}
	}
	for dev := range a.seen {
		if !present[dev] {
			delete(a.seen, dev) // removed: read it again when it comes back
		}
	}
	return false
}

// isDevice reports whether p is a block device.
func isDevice(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&os.ModeDevice != 0
}

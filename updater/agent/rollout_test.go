package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
)

// TestRolloutOnHost: with the rig's real repository, plumb serve's server
// and a device on files: a paused release is not started (nothing is
// written to the inactive slot), a halt shows its reason in the state,
// resume lets the device install it, and halting it again leaves a device
// that committed it where it is.
func TestRolloutOnHost(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	a := r.agent(t, "a", v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.publish(t, v2)
	rollout := func(edit tufrepo.RolloutEdit) {
		t.Helper()
		repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Rollout(t.Context(), hardware, v2, edit); err != nil {
			t.Fatalf("Rollout: %v", err)
		}
	}
	slotB := sumFile(t, r.slots["b"].Device, -1)
	noInstall := func(want string) {
		t.Helper()
		installed, err := a.Poll(t.Context())
		if installed || err != nil {
			t.Fatalf("Poll = %v, %v; want no update", installed, err)
		}
		if got := a.State().LastResult; !strings.Contains(got, want) {
			t.Errorf("last_result %q, want it to contain %q", got, want)
		}
		if sumFile(t, r.slots["b"].Device, -1) != slotB || r.reboots != 0 || !equal(r.entries(t), []string{"plumb-1.0.0.conf"}) {
			t.Error("the held-back release was started: slot b, the entries or a reboot changed")
		}
	}

	rollout(func(c *release.Control, _ time.Time) error { c.Paused = true; return nil })
	noInstall("no update (" + v2 + " paused)")
	rollout(func(c *release.Control, now time.Time) error {
		c.Halted = &release.Halt{Reason: "failure rate 50% (10 of 20 devices that tried it)", At: now, By: "test controller"}
		return nil
	})
	noInstall(v2 + " halted at ")
	noInstall("by test controller: failure rate 50% (10 of 20 devices that tried it)")

	rollout(func(c *release.Control, _ time.Time) error { c.Paused, c.Halted = false, nil; return nil })
	installV2(t, r, a)
	bootTrial(t, r, v2ID+"+2-1.conf")
	b := r.agent(t, "b", v2, nil)
	if err := b.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Halted after this device committed it: it stays.
	rollout(func(c *release.Control, now time.Time) error {
		c.Halted = &release.Halt{Reason: "late failures", At: now, By: "test controller"}
		return nil
	})
	if installed, err := b.Poll(t.Context()); installed || err != nil || b.State().LastResult != "no update" {
		t.Fatalf("Poll on the committed release after its halt = %v, %v (%q); want no update", installed, err, b.State().LastResult)
	}
	if st := r.state(t); st.Phase != PhaseCommitted || st.Event != "committed "+v2 {
		t.Errorf("state after the halt = %+v, want still committed %s", st, v2)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf", v2ID + ".conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
}

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/testutil"
)

// TestStateGolden: state.json as Save writes it.
func TestStateGolden(t *testing.T) {
	facts := release.Facts{Kind: release.KindFull, Name: "edge-demo", Hardware: "qemu-x86_64", Version: "1.2.0-rc.1+build.7", Channel: "stable",
		Rootfs: release.Digest{SHA256: strings.Repeat("ab", 32), Size: 8949760}}
	st := &State{Phase: PhaseIdle, Version: facts.Version, Target: release.TargetPath("qemu-x86_64", facts.Version), Slot: disklayout.B, Method: MethodDelta,
		Fetched: 1234, Facts: &facts, LastCheck: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), LastResult: "no update",
		Bad:         map[string]string{facts.Version: "health check command /bin/true: exit status 1"},
		Event:       "rolled back from " + facts.Version + ": health check command /bin/true: exit status 1",
		Attestation: &Attestation{Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), Release: "1.0.0", Verdict: "passed"}}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/state.golden.json", testutil.ReadFixture(t, p))
}

// TestStatePreviousRelease: the state the previous release's agent saved
// loads, bad releases included.
func TestStatePreviousRelease(t *testing.T) {
	st, err := LoadState("testdata/prev/state.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != PhaseIdle || st.Slot != disklayout.B || !st.BadSet()["1.1.0-rc.2"] || st.Facts == nil || st.Attestation == nil {
		t.Errorf("LoadState(previous release) = %+v", st)
	}
}

// TestStateKeepsUnknown: members a newer agent wrote survive a load and a
// save by this one.
func TestStateKeepsUnknown(t *testing.T) {
	st, err := LoadState("testdata/next/state.json")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "state.json")
	st.Phase = PhaseIdle
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	b := string(testutil.ReadFixture(t, p))
	for _, want := range []string{`"boot_history": [`, `"quarantine": {`, `"until": "2027-01-01T00:00:00Z"`, `"phase": "idle"`} {
		if !strings.Contains(b, want) {
			t.Errorf("saved state lacks %s:\n%s", want, b)
		}
	}
}

// TestRollbackSkew: v2's trial failed and the device rolled back to v1,
// whose agent is the older one (this code). The newer agent wrote
// state.json (testdata/next/state.json) with members this one does not
// know. The older agent reads it, keeps v2 bad, does not download v2
// again, and keeps the newer agent's members when it saves.
func TestRollbackSkew(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	writeFile(t, filepath.Join(r.dataDir, stateFile), testutil.ReadFixture(t, "testdata/next/state.json"))
	sumB := sumFile(t, r.slots[disklayout.B].Device, -1)

	old := r.agent(t, disklayout.A, v1, nil)
	if err := old.Settle(t.Context()); err != nil {
		t.Fatalf("Settle after the rollback: %v", err)
	}
	installed, err := old.Poll(t.Context())
	if installed || err != nil || old.State().LastResult != "no update" {
		t.Errorf("Poll = %v, %v (last result %q); want no update: %s failed here", installed, err, old.State().LastResult, v2)
	}
	if sumFile(t, r.slots[disklayout.B].Device, -1) != sumB {
		t.Errorf("slot b was written: the bad release was installed again")
	}
	st := r.state(t)
	if !st.BadSet()[v2] {
		t.Errorf("state = %+v: %s is no longer bad", st, v2)
	}
	b, err := os.ReadFile(filepath.Join(r.dataDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"quarantine"`) || !strings.Contains(string(b), `"boot_history"`) {
		t.Errorf("the older agent dropped the newer one's members:\n%s", b)
	}
}

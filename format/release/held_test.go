package release

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestChooseWaves: Choose follows the device's group and clock, and skips
// a halted newest release for an older admitted one.
func TestChooseWaves(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	withControl := func(tg Target, c Control) Target {
		var f Facts
		json.Unmarshal(tg.Custom, &f)
		f.Control = c
		tg.Custom, _ = json.Marshal(f)
		return tg
	}
	canaryOnly := Control{Waves: []Wave{{Percent: 0, At: at}, {Percent: 100, At: at, Group: "canary"}}}
	halted := Control{Halted: &Halt{Reason: "r", At: at, By: "b"}}
	base := Want{Hardware: "qemu", Channel: "stable", Running: "1.0.0", DeviceID: "dev-1", Now: at}
	canary := base
	canary.Group = "canary"
	early := base
	early.Now = at.Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		targets []Target
		want    Want
		wantVer string
		held    string
	}{
		{"default group waits", []Target{withControl(target("full", "qemu", "2.0.0", "stable", 0), canaryOnly)}, base, "", "not in its rollout yet (0% admitted)"},
		{"canary goes", []Target{withControl(target("full", "qemu", "2.0.0", "stable", 0), canaryOnly)}, canary, "2.0.0", ""},
		{"canary before its wave", []Target{withControl(target("full", "qemu", "2.0.0", "stable", 0), canaryOnly)}, func() Want { w := canary; w.Now = early.Now; return w }(), "", "100% from 2026-12-04T08:00:00Z"},
		{"halted newest, older admitted", []Target{
			withControl(target("full", "qemu", "3.0.0", "stable", 0), halted),
			target("full", "qemu", "2.0.0", "stable", 100),
		}, base, "2.0.0", "3.0.0 halted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := Choose(tc.targets, tc.want)
			gotVer := ""
			if got != nil {
				gotVer = got.Facts.Version
			}
			held := HeldBack(tc.targets, tc.want, got)
			if gotVer != tc.wantVer || (tc.held == "") != (held == "") || !strings.Contains(held, tc.held) {
				t.Errorf("Choose = %q, held %q; want %q, held containing %q", gotVer, held, tc.wantVer, tc.held)
			}
		})
	}
}

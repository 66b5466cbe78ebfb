package release

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func target(kind, hw, version, channel string, rollout int) Target {
	f := Facts{
		Kind: kind, Name: "demo", Hardware: hw, Version: version, Channel: channel, Rollout: rollout,
		Rootfs: Digest{SHA256: strings.Repeat("ab", 32), Size: 1},
	}
	path := TargetPath(hw, version)
	if kind == KindDelta {
		f.From, f.BaseSHA256 = "1.0.0", strings.Repeat("cd", 32)
		path = DeltaPath(hw, version, "1.0.0")
	}
	b, _ := json.Marshal(f)
	return Target{Path: path, Custom: b}
}

func TestChoose(t *testing.T) {
	base := Want{Hardware: "qemu", Channel: "stable", Running: "1.0.0", DeviceID: "dev-1"}
	tests := []struct {
		name    string
		targets []Target
		want    Want
		wantVer string
	}{
		{"nothing", nil, base, ""},
		{"newer", []Target{target("full", "qemu", "1.1.0", "stable", 100)}, base, "1.1.0"},
		{"newest of several", []Target{
			target("full", "qemu", "1.10.0", "stable", 100),
			target("full", "qemu", "1.9.0", "stable", 100),
			target("full", "qemu", "1.2.0", "stable", 100),
		}, base, "1.10.0"},
		{"same version", []Target{target("full", "qemu", "1.0.0", "stable", 100)}, base, ""},
		{"older", []Target{target("full", "qemu", "0.9.0", "stable", 100)}, base, ""},
		{"other hardware", []Target{target("full", "rpi4", "2.0.0", "stable", 100)}, base, ""},
		{"other channel", []Target{target("full", "qemu", "2.0.0", "beta", 100)}, base, ""},
		{"delta is not a release", []Target{target("delta", "qemu", "2.0.0", "stable", 100)}, base, ""},
		{"bad release skipped for the next", []Target{
			target("full", "qemu", "2.0.0", "stable", 100),
			target("full", "qemu", "1.5.0", "stable", 100),
		}, Want{Hardware: "qemu", Channel: "stable", Running: "1.0.0", Bad: map[string]bool{"2.0.0": true}}, "1.5.0"},
		{"rollout 0 excludes everyone", []Target{target("full", "qemu", "2.0.0", "stable", 0)}, base, ""},
		{"pre-release below release", []Target{
			target("full", "qemu", "2.0.0-rc1", "stable", 100),
			target("full", "qemu", "2.0.0", "stable", 100),
		}, base, "2.0.0"},
		{"facts at the wrong path ignored", []Target{{Path: "qemu/9.9.9/rootfs.sqfs", Custom: target("full", "qemu", "2.0.0", "stable", 100).Custom}}, base, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := Choose(tt.targets, tt.want)
			gotVer := ""
			if got != nil {
				gotVer = got.Facts.Version
			}
			if gotVer != tt.wantVer {
				t.Errorf("Choose = %q, want %q", gotVer, tt.wantVer)
			}
		})
	}
}

func TestChooseSkipsBadFacts(t *testing.T) {
	targets := []Target{{Path: "qemu/2.0.0/rootfs.sqfs", Custom: json.RawMessage(`{"kind":"full","hardware":"qemu","version":"2.0.0","channel":"stable","rollout":300}`)}}
	got, skipped := Choose(targets, Want{Hardware: "qemu", Channel: "stable", Running: "1.0.0"})
	if got != nil || skipped["qemu/2.0.0/rootfs.sqfs"] == nil {
		t.Fatalf("Choose = %v, skipped %v; want nothing chosen and the target skipped", got, skipped)
	}
	if msg := skipped["qemu/2.0.0/rootfs.sqfs"].Error(); !strings.Contains(msg, "rollout") {
		t.Errorf("skip reason %q does not name rollout", msg)
	}
}

func TestInRolloutSpread(t *testing.T) {
	n := 0
	for i := range 10000 {
		if InRollout(fmt.Sprintf("device-%d", i), "2.0.0", 25) {
			n++
		}
	}
	if n < 2200 || n > 2800 {
		t.Errorf("%d of 10000 devices inside a 25%% rollout, want about 2500", n)
	}
	if !InRollout("x", "1", 100) || InRollout("x", "1", 0) {
		t.Error("100% must include and 0% exclude every device")
	}
}

func TestChooseDelta(t *testing.T) {
	const runSHA, fullSHA = "11", "22"
	sha := func(s string) string { return strings.Repeat(s, 32) }
	full := &Candidate{Path: TargetPath("qemu", "2.0.0"), Length: 1000, SHA256: sha(fullSHA),
		Facts: &Facts{Kind: "full", Hardware: "qemu", Version: "2.0.0"}}
	running := Target{Path: TargetPath("qemu", "1.0.0"), Length: 900, SHA256: sha(runSHA)}
	deltaT := func(mod func(f *Facts)) Target {
		f := Facts{Kind: "delta", Name: "demo", Hardware: "qemu", Version: "2.0.0", Channel: "stable", Rollout: 100,
			Rootfs: Digest{SHA256: sha(fullSHA), Size: 1000}, From: "1.0.0", BaseSHA256: sha(runSHA)}
		if mod != nil {
			mod(&f)
		}
		b, _ := json.Marshal(f)
		return Target{Path: DeltaPath("qemu", "2.0.0", "1.0.0"), Custom: b, Length: 50, SHA256: sha("33")}
	}
	w := Want{Hardware: "qemu", Channel: "stable", Running: "1.0.0"}
	tests := []struct {
		name    string
		targets []Target
		why     string // "" when the delta is chosen
	}{
		{"delta from the running image", []Target{running, deltaT(nil)}, ""},
		{"no delta", []Target{running}, "no delta from 1.0.0"},
		{"running release not published", []Target{deltaT(nil)}, "is not in the repository"},
		{"other base", []Target{running, deltaT(func(f *Facts) { f.BaseSHA256 = sha("44") })}, "is not the running image's sha256"},
		{"other result", []Target{running, deltaT(func(f *Facts) { f.Rootfs.SHA256 = sha("44") })}, "not the full release's"},
		{"facts of a full release", []Target{running, deltaT(func(f *Facts) { f.Kind = "full" })}, "facts say kind full"},
		{"bad facts", []Target{running, deltaT(func(f *Facts) { f.BaseSHA256 = "x" })}, "base_sha256: expected 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := ChooseDelta(tt.targets, full, w)
			if tt.why == "" {
				if got == nil || got.Length != 50 || got.SHA256 != sha("33") || got.Facts.From != "1.0.0" {
					t.Fatalf("ChooseDelta = %+v, %q; want the delta", got, why)
				}
				return
			}
			if got != nil || !strings.Contains(why, tt.why) {
				t.Errorf("ChooseDelta = %+v, %q; want none because %q", got, why, tt.why)
			}
		})
	}
}

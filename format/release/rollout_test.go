package release

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

func factsWith(c Control, rollout int) *Facts {
	return &Facts{Kind: KindFull, Hardware: "qemu", Version: "2.0.0", Channel: "stable", Rollout: rollout,
		Rootfs: Digest{SHA256: strings.Repeat("ab", 32), Size: 1}, Control: c}
}

func admitted(f *Facts, group string, now time.Time, n int) int {
	k := 0
	for i := range n {
		if ok, _ := f.Admits(fmt.Sprintf("device-%04d", i), group, now); ok {
			k++
		}
	}
	return k
}

// TestWavesAdmitFractions: each wave admits its share of 1,000 device ids
// (within the spread of fnv32a mod 100), a group's own schedule replaces
// the default one, devices admitted once stay admitted, and the legacy
// percentage never admits more than the waves.
func TestWavesAdmitFractions(t *testing.T) {
	c := Control{}
	c.SetWaves("", []Wave{{Percent: 10, At: t0}, {Percent: 50, At: t0.Add(24 * time.Hour)}, {Percent: 100, At: t0.Add(72 * time.Hour)}})
	c.SetWaves("canary", []Wave{{Percent: 100, At: t0}})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	f := factsWith(c, 10)
	for _, tc := range []struct {
		group  string
		at     time.Duration
		want   int // percent
		legacy int
	}{
		{"", -time.Hour, 0, 0},
		{"", 0, 10, 10},
		{"", 23 * time.Hour, 10, 10},
		{"", 24 * time.Hour, 50, 50},
		{"", 71 * time.Hour, 50, 50},
		{"", 72 * time.Hour, 100, 100},
		{"canary", 0, 100, 10},
		{"other", 24 * time.Hour, 50, 50}, // no schedule of its own: the default one
	} {
		now := t0.Add(tc.at)
		got := admitted(f, tc.group, now, 1000)
		// fnv32a mod 100 over 1,000 ids: within ±4.5 points of the share.
		if lo, hi := tc.want*10-45, tc.want*10+45; got < lo || got > hi {
			t.Errorf("group %q at %v: %d of 1000 admitted, want %d%% (%d..%d)", tc.group, tc.at, got, tc.want, lo, hi)
		}
		if p := c.Percent(10, tc.group, now); p != tc.want {
			t.Errorf("Percent(%q, %v) = %d, want %d", tc.group, tc.at, p, tc.want)
		}
		if l := c.LegacyPercent(10, now); l != tc.legacy {
			t.Errorf("LegacyPercent(%v) = %d, want %d", tc.at, l, tc.legacy)
		}
	}
	// Nested: every device of the 10% wave is in the 50% wave, and every
	// device an old agent admits (rollout = legacy) a new one admits.
	for i := range 1000 {
		id := fmt.Sprintf("device-%04d", i)
		in10, _ := f.Admits(id, "", t0)
		in50, _ := f.Admits(id, "", t0.Add(24*time.Hour))
		if in10 && !in50 {
			t.Fatalf("%s admitted at 10%% but not at 50%%", id)
		}
		legacy := Bucket(id, f.Version) < c.LegacyPercent(f.Rollout, t0)
		if legacy && !in10 {
			t.Fatalf("%s: an old agent (rollout %d) would install what the waves exclude", id, c.LegacyPercent(f.Rollout, t0))
		}
	}
}

func TestAdmitsPauseHalt(t *testing.T) {
	c := Control{Waves: []Wave{{Percent: 100, At: t0}}}
	f := factsWith(c, 100)
	if ok, why := f.Admits("d", "", t0); !ok {
		t.Fatalf("Admits at 100%% = false (%s)", why)
	}
	f.Paused = true
	if ok, why := f.Admits("d", "", t0); ok || why != "2.0.0 paused" {
		t.Errorf("paused: Admits = %v, %q", ok, why)
	}
	if l := f.Control.LegacyPercent(100, t0); l != 0 {
		t.Errorf("paused: legacy %d, want 0", l)
	}
	f.Paused = false
	f.Halted = &Halt{Reason: "failure rate 40% (4 of 10)", At: t0, By: "plumb rollout watch"}
	ok, why := f.Admits("d", "", t0)
	if ok || !strings.Contains(why, "halted") || !strings.Contains(why, "failure rate 40% (4 of 10)") || !strings.Contains(why, "plumb rollout watch") {
		t.Errorf("halted: Admits = %v, %q; want the reason and who", ok, why)
	}
	f.Halted = nil
	f.Waves = []Wave{{Percent: 0, At: t0}, {Percent: 100, At: t0.Add(time.Hour)}}
	if ok, why := f.Admits("d", "", t0); ok || !strings.Contains(why, "100% from 2026-12-04T09:00:00Z") {
		t.Errorf("before its wave: Admits = %v, %q; want the next wave named", ok, why)
	}
}

func TestControlValidate(t *testing.T) {
	h := strings.Repeat("ab", 32)
	base := `{"kind":"full","hardware":"qemu","version":"2.0.0","channel":"stable","rollout":10,"rootfs":{"sha256":"` + h + `","size":1}`
	for _, tc := range []struct{ extra, wantErr string }{
		{``, ""},
		{`,"waves":[{"percent":10,"at":"2026-12-04T08:00:00Z"},{"percent":50,"at":"2026-12-05T08:00:00Z"}]`, ""},
		{`,"waves":[{"percent":10,"at":"2026-12-04T08:00:00Z","group":"canary"},{"percent":5,"at":"2026-12-04T08:00:00Z"}]`, ""},
		{`,"waves":[{"percent":101,"at":"2026-12-04T08:00:00Z"}]`, "waves[0].percent: expected a percentage 0..100, got 101"},
		{`,"waves":[{"percent":10}]`, "waves[0].at: expected a time"},
		{`,"waves":[{"percent":10,"at":"tomorrow"}]`, "release facts: "},
		{`,"waves":[{"percent":50,"at":"2026-12-04T08:00:00Z"},{"percent":10,"at":"2026-12-05T08:00:00Z"}]`, "waves[1].percent: expected at least 50"},
		{`,"waves":[{"percent":10,"at":"2026-12-05T08:00:00Z"},{"percent":50,"at":"2026-12-04T08:00:00Z"}]`, "waves[1].at: expected a time after"},
		{`,"waves":[{"percent":10,"at":"2026-12-04T08:00:00Z","group":"Bad Group"}]`, "waves[0].group"},
		{`,"waves":{}`, "release facts: "},
		{`,"paused":"yes"`, "release facts: "},
		{`,"halted":{"reason":"","at":"2026-12-04T08:00:00Z","by":"x"}`, "halted.reason"},
		{`,"halted":{"reason":"r","at":"2026-12-04T08:00:00Z"}`, "halted.by"},
		{`,"halted":{"reason":"r","by":"x"}`, "halted.at"},
		{`,"halted":{"reason":"` + strings.Repeat("x", MaxReasonSize+1) + `","at":"2026-12-04T08:00:00Z","by":"x"}`, "halted.reason: expected 1..512 bytes"},
	} {
		_, err := Parse([]byte(base + tc.extra + `}`))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Parse(%s): %v", tc.extra, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Parse(%s) = %v, want an error containing %q", tc.extra, err, tc.wantErr)
		}
	}
	var many []Wave
	for i := range MaxWaves + 1 {
		many = append(many, Wave{Percent: 1, At: t0.Add(time.Duration(i) * time.Hour)})
	}
	if err := (&Control{Waves: many}).Validate(); err == nil || !strings.Contains(err.Error(), "at most 64 waves") {
		t.Errorf("%d waves: %v", len(many), err)
	}
}

// FuzzParseControl: any custom field either fails with one line or gives
// facts whose control validates, admits nothing when halted or paused,
// and whose schedule never admits fewer devices later.
func FuzzParseControl(f *testing.F) {
	h := strings.Repeat("ab", 32)
	base := `{"kind":"full","hardware":"qemu","version":"2.0.0","channel":"stable","rollout":10,"rootfs":{"sha256":"` + h + `","size":1}`
	for _, s := range []string{
		``,
		`,"waves":[{"percent":10,"at":"2026-12-04T08:00:00Z"},{"percent":50,"at":"2026-12-05T08:00:00Z","group":"canary"}]`,
		`,"paused":true`,
		`,"halted":{"reason":"r","at":"2026-12-04T08:00:00Z","by":"x"}`,
		`,"waves":[{"percent":-1,"at":"0001-01-01T00:00:00Z"}]`,
	} {
		f.Add([]byte(base+s+`}`), "canary", int64(0))
	}
	f.Fuzz(func(t *testing.T, custom []byte, group string, offset int64) {
		facts, err := Parse(custom)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if err := facts.Control.Validate(); err != nil {
			t.Fatalf("Parse accepted facts whose control fails: %v", err)
		}
		if _, err := json.Marshal(facts); err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		now := t0.Add(time.Duration(offset))
		later := now.Add(time.Hour)
		p, q := facts.Control.Percent(facts.Rollout, group, now), facts.Control.Percent(facts.Rollout, group, later)
		if p > q {
			t.Fatalf("percent falls from %d to %d an hour later", p, q)
		}
		if l := facts.Control.LegacyPercent(facts.Rollout, now); len(facts.Waves) > 0 && l > facts.Control.Percent(facts.Rollout, "", now) {
			t.Fatalf("legacy %d above the default wave", l)
		}
		ok, why := facts.Admits("device-1", group, now)
		if (facts.Halted != nil || facts.Paused) && ok {
			t.Fatal("a halted or paused release admits a device")
		}
		if !ok && (why == "" || strings.Contains(why, "\n")) {
			t.Fatalf("refusal without a one-line reason: %q", why)
		}
	})
}

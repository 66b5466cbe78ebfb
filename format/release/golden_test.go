package release

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
)

func sampleFacts() Facts {
	h := strings.Repeat("ab", 32)
	return Facts{Kind: KindFull, Name: "edge-demo", Hardware: "qemu-x86_64", Version: "1.2.0-rc.1+build.7", Channel: "stable", Rollout: 50,
		Rootfs: Digest{SHA256: h, Size: 8949760}, Kernel: Digest{SHA256: h, Size: 7000000}, Initrd: Digest{SHA256: h, Size: 3000000},
		Cmdline:  "console=ttyS0 panic=5",
		Measured: &Measured{Bootloader: h, Kernel: h, Initrd: h, PCR15: h, Cmdline: map[string]string{"a": "initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro plumb.slot=a"}}}
}

func TestGolden(t *testing.T) {
	f := sampleFacts()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/facts.golden.json", append(b, '\n'))
}

// TestPreviousRelease parses the facts the previous release published.
func TestPreviousRelease(t *testing.T) {
	f, err := Parse(testutil.ReadFixture(t, "testdata/prev/facts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != "1.1.0-rc.2" || f.Measured == nil || f.Measured.Cmdline["b"] == "" || f.Rollout != 50 {
		t.Errorf("Parse(previous release) = %+v", f)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := json.Marshal(sampleFacts())
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		facts, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if !ValidVersion(facts.Version) {
			t.Errorf("Parse accepted version %q", facts.Version)
		}
	})
}

// TestGoldenRolloutFacts: the encoding of facts with rollout control is
// fixed by testdata/facts-rollout.json (regenerate with -update), and
// facts from before rollout control (testdata/facts-1.0.json, rollout
// only) still parse and admit by their rollout percentage.
func TestGoldenRolloutFacts(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	f := Facts{Kind: KindFull, Name: "demo", Hardware: "qemu-x86_64", Version: "2.0.0", Channel: "stable", Rollout: 0,
		Rootfs: Digest{SHA256: strings.Repeat("ab", 32), Size: 4096},
		Kernel: Digest{SHA256: strings.Repeat("cd", 32), Size: 10}, Initrd: Digest{SHA256: strings.Repeat("ef", 32), Size: 20},
		Control: Control{
			Waves:  []Wave{{Percent: 10, At: at}, {Percent: 100, At: at.Add(72 * time.Hour)}, {Percent: 100, At: at, Group: "canary"}},
			Paused: true,
			Halted: &Halt{Reason: "failure rate 40% (8 of 20 devices that tried it) passed the threshold 20% (minimum sample 20)", At: at.Add(time.Hour), By: "plumb rollout watch"},
		}}
	got, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "facts-rollout.json")
	if *testutil.Update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("facts encode as\n%s\nwant (%s)\n%s", got, golden, want)
	}
	back, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Waves) != 3 || !back.Paused || back.Halted == nil || back.Halted.By != "plumb rollout watch" {
		t.Errorf("Parse(golden) control = %+v", back.Control)
	}

	old, err := os.ReadFile(filepath.Join("testdata", "facts-1.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	of, err := Parse(old)
	if err != nil {
		t.Fatalf("facts from before rollout control: %v", err)
	}
	if len(of.Waves) != 0 || of.Paused || of.Halted != nil || of.Rollout != 25 {
		t.Errorf("old facts: control %+v rollout %d; want none and 25", of.Control, of.Rollout)
	}
	n := 0
	for i := range 1000 {
		if ok, _ := of.Admits(string(rune('a'+i%26))+strings.Repeat("x", i/26), "canary", at); ok {
			n++
		}
	}
	if n < 200 || n > 300 {
		t.Errorf("old facts with rollout 25: %d of 1000 admitted", n)
	}
}

package release

import (
	"encoding/json"
	"strings"
	"testing"

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

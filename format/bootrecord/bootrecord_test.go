package bootrecord

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/disklayout"
)

func TestExpectedPCR15(t *testing.T) {
	rootfs := strings.Repeat("ab", 32)
	got, err := ExpectedPCR15(rootfs, "1.2.0-rc.1+build.7")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ReplayPCR([]Measurement{RootfsMeasurement(rootfs), ReleaseMeasurement("1.2.0-rc.1+build.7")}, MeasurePCR)
	if len(got) != 64 || got == strings.Repeat("0", 64) || !strings.EqualFold(got, hexOf(want)) {
		t.Errorf("ExpectedPCR15 = %s, replay = %x", got, want)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func TestFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bi := BootInfo{Slot: disklayout.B, RootPARTUUID: "x", RootDevice: "/dev/vda3", Measured: true, InitMillis: 5}
	if err := WriteBootInfo(filepath.Join(dir, "run/plumb/boot.json"), bi); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadBootInfo(filepath.Join(dir, "run/plumb/boot.json")); err != nil || got != bi {
		t.Errorf("ReadBootInfo = %+v, %v; want %+v", got, err, bi)
	}
	ms := []Measurement{RootfsMeasurement(strings.Repeat("cd", 32)), ReleaseMeasurement("1.0.0")}
	if err := WriteMeasurements(filepath.Join(dir, "m.json"), ms); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadMeasurements(filepath.Join(dir, "m.json")); err != nil || len(got) != 2 || got[1] != ms[1] {
		t.Errorf("ReadMeasurements = %+v, %v", got, err)
	}
}

// FuzzReplay: no log panics the replay; a bad digest is one error line.
func FuzzReplay(f *testing.F) {
	b, _ := json.Marshal([]Measurement{RootfsMeasurement(strings.Repeat("ab", 32)), ReleaseMeasurement("1.0.0")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ms []Measurement
		if json.Unmarshal(data, &ms) != nil {
			return
		}
		if _, err := ReplayPCR(ms, MeasurePCR); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	})
}

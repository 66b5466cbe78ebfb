package bootentry

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/testutil"
)

func TestGolden(t *testing.T) {
	committed := Entry{Version: "1.0.0", Slot: disklayout.A, PartUUID: "7c7f0a17-b18f-84ab-88c1-2c29a0c5c924", Cmdline: "console=ttyS0 panic=5"}
	trial := NewTrial("1.2.0-rc.1+build.7", disklayout.B, "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", "console=ttyS0 panic=5")
	for _, e := range []Entry{committed, trial} {
		testutil.Golden(t, filepath.Join("testdata", e.Name()), []byte(e.Content()))
	}
	testutil.Golden(t, "testdata/loader.conf", []byte(LoaderConf))
}

// TestPreviousRelease parses the entries the previous release wrote: the
// builder's committed one and the agent's trial.
func TestPreviousRelease(t *testing.T) {
	want := map[string]Entry{
		"plumb-1.1.0-rc.2.conf":   {Version: "1.1.0-rc.2", Slot: disklayout.A, PartUUID: "7c7f0a17-b18f-84ab-88c1-2c29a0c5c924", Cmdline: "console=ttyS0 panic=5"},
		"plumb-1.1.0-rc.2+3.conf": {Version: "1.1.0-rc.2", Slot: disklayout.B, PartUUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", Cmdline: "console=ttyS0 panic=5", Counting: true, TriesLeft: 3},
	}
	for name, w := range want {
		b, err := os.ReadFile(filepath.Join("testdata/prev", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(name, string(b))
		if err != nil || got != w {
			t.Errorf("Parse(%s) = %+v, %v; want %+v", name, got, err, w)
		}
	}
}

package attest_test

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/format/bootrecord"
)

// TestPlumbLogDoesNotReplay: a plumb-init log that does not replay to the
// quoted PCR 15 fails plumb_log, whatever the reason (an extend the log
// misses, one it has that PCR 15 does not, one done twice, a forged
// digest), and the detail names the event where log and PCR 15 part.
// The device really extends its TPM (the simulator); only the log file is
// edited, as a tamperer or a plumb-init that lost track would leave it.
func TestPlumbLogDoesNotReplay(t *testing.T) {
	rootfs := bootrecord.RootfsMeasurement(hex.EncodeToString(rootfsDigest))
	rel := bootrecord.ReleaseMeasurement(testVersion)
	for _, tc := range []struct {
		name   string
		log    []bootrecord.Measurement
		extend [][]byte // extra extends of PCR 15 after plumb-init's two
		detail string
	}{
		{name: "extend not logged", log: []bootrecord.Measurement{rootfs},
			detail: `it diverges after plumb_log[0] (plumb.rootfs "` + rootfs.Data + `"): PCR 15 also holds plumb.release "2.0.0" (the release's reference), which the log does not list`},
		{name: "first extend not logged", log: []bootrecord.Measurement{rel},
			detail: `it diverges before plumb_log's first event: PCR 15 also holds plumb.rootfs "` + rootfs.Data + `" (the release's reference)`},
		{name: "logged not extended", log: []bootrecord.Measurement{rootfs, rel, bootrecord.ReleaseMeasurement("2.0.1")},
			detail: `PCR 15 holds the first 2 of the log's 3 extends: it diverges at plumb_log[2] (plumb.release "2.0.1"), which PCR 15 does not hold`},
		{name: "extended twice", log: []bootrecord.Measurement{rootfs, rel}, extend: [][]byte{sum(testVersion)},
			detail: `it diverges at plumb_log[1] (plumb.release "2.0.0"): PCR 15 holds this extend twice, the log once`},
		{name: "forged rootfs", log: []bootrecord.Measurement{bootrecord.RootfsMeasurement(hex.EncodeToString(sum("other image"))), rel},
			detail: `PCR 15 does not start with plumb_log[0] (plumb.rootfs "` + hex.EncodeToString(sum("other image")) + `")`},
		{name: "empty log", log: []bootrecord.Measurement{}, detail: "the log is empty but PCR 15 was extended"},
		{name: "state unknown", log: []bootrecord.Measurement{rootfs, bootrecord.UnknownMeasurement(rel, "the extend failed (timer expired) and PCR 15 could not be read back\nsecond line")},
			detail: `plumb_log[1]: plumb-init could not tell whether an extend reached PCR 15, and measured nothing after it: "plumb.release 2.0.0: the extend failed (timer expired)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, kernelDigest)
			for _, d := range tc.extend {
				if err := tpm2.PCRExtend(r.rw, tpmutil.Handle(bootrecord.MeasurePCR), tpm2.AlgSHA256, d, ""); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := json.Marshal(tc.log)
			writeFile(t, filepath.Join(r.dir, "measurements.json"), b)
			n := nonce(t)
			rep := r.ver.Verify(r.evidence(n), n, r.refs)
			expect(t, rep, attest.VerdictFailed, map[string]string{
				attest.CheckPlumbLog: attest.StatusFailed,
				attest.CheckRootfs:   attest.StatusNotCheckable,
				attest.CheckRelease:  attest.StatusNotCheckable,
			})
			c := rep.Check(attest.CheckPlumbLog)
			t.Logf("plumb_log: %s", c.Detail)
			if !strings.Contains(c.Detail, tc.detail) || strings.Contains(c.Detail, "\n") {
				t.Errorf("plumb_log detail = %q, want it to contain %q", c.Detail, tc.detail)
			}
		})
	}
}

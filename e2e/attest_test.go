package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/testutil"
)

// -attest-docs DIR writes the reports TestFleetLifecycleVM got into DIR
// (attestation-report.{json,md} and the tampered device's), as committed
// under docs/.
var attestDocs = flag.String("attest-docs", "", "directory to write TestFleetLifecycleVM's example attestation reports to")

const attested = "  commit: attested\n"

// TestAttestedCommitRollback: a release published with reference values
// that do not match what the device measures (its kernel's authenticode
// digest altered in the facts) is installed and booted on trial, passes
// its health checks, fails the attested commit and rolls back; plumbd
// status names the failed check.
//
// Its first boot has a TPM that answers late (testvm HoldTPM: swtpm
// stopped from plumb-init's "root found" until the guest is stuck on it):
// the guest's driver gives up on plumb-init's PCR 15 extend of the root
// image while swtpm still executes it, as on a starved CI machine. The
// log must still replay to PCR 15: that boot's attestation passes.
func TestAttestedCommitRollback(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-attcommit")
	v1, v2 := f.build("1.0.0", "", attested), f.build("2.0.0", "", attested)
	wrong := alterReference(t, v2)
	f.publish(v1)
	d := f.flash(t, v1, "device")

	vm := d.powerOn()
	d.waitFor(0, `plumb-init: .*"root found"`)
	held, err := vm.HoldTPM(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d.waitFor(0, `tpm tpm0: Operation Timed out`)
	line := d.waitFor(0, `attestation verdict" verdict=(\S+) failed=(\S*) release=1\.0\.0 device=(\S+)`)
	t.Logf("swtpm held %.1fs from \"root found\": plumb-init's extend timed out in the guest; verdict %s", held.Seconds(), line[1])
	if line[1] != attest.VerdictPassed {
		t.Errorf("a boot whose TPM answered late: verdict %s, failed %q; want passed\n%s", line[1], line[2], f.reportFile(line[3]))
	}
	if !strings.Contains(vm.Console(), `the TPM took the extend although it reported an error" type=plumb.rootfs`) {
		t.Errorf("plumb-init did not log that the TPM took the extend it reported as failed")
	}
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	published := time.Now()
	f.publish(v2)
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `trial failed, rebooting into the previous slot" version=2\.0\.0`)
	d.waitFor(mark, `rolled back" from=2\.0\.0 to=1\.0\.0 reason="health check attestation: measured boot does not match release 2\.0\.0: kernel failed \(expected `+wrong)
	t.Logf("rolled back %.1fs after publishing", time.Since(published).Seconds())
	vm.Close()

	// plumbd status, run on the device's data partition as it is now.
	root := t.TempDir()
	state := filepath.Join(root, "data", "plumb", "state.json")
	os.MkdirAll(filepath.Dir(state), 0o755)
	os.WriteFile(state, []byte(d.readData("/plumb/state.json")), 0o644)
	plumbd, _ := testutil.Binaries(t)
	out, err := exec.Command(plumbd, "status", "--root", root).CombinedOutput()
	if err != nil {
		t.Fatalf("plumbd status: %v\n%s", err, out)
	}
	var st struct {
		Update struct {
			Phase string            `json:"phase"`
			Bad   map[string]string `json:"bad"`
			Event string            `json:"event"`
		} `json:"update"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("plumbd status: %v\n%s", err, out)
	}
	want := "health check attestation: measured boot does not match release 2.0.0: kernel failed (expected " + wrong
	if !strings.HasPrefix(st.Update.Bad["2.0.0"], want) || !strings.HasPrefix(st.Update.Event, "rolled back from 2.0.0: "+want) {
		t.Errorf("plumbd status: bad %q, event %q; want the kernel check named", st.Update.Bad, st.Update.Event)
	}
	if entries := d.entries(); strings.Contains(entries, "plumb-2.0.0") {
		t.Errorf("ESP still holds 2.0.0's entry: %q", entries)
	}
}

// alterReference changes the kernel's published reference value in a
// build's manifest (plumb publish copies it into the release facts) and
// returns the new value.
func alterReference(t *testing.T, build string) string {
	t.Helper()
	p := filepath.Join(build, builder.ManifestFile)
	m, err := builder.ReadManifest(p)
	if err != nil {
		t.Fatal(err)
	}
	k := []byte(m.Measured.Kernel)
	if k[0] == '0' { // another digest
		k[0] = '1'
	} else {
		k[0] = '0'
	}
	m.Measured.Kernel = string(k)
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return m.Measured.Kernel
}

// tamperKernel changes one byte of the slot's kernel on the ESP: the last
// byte of the PE section .compat (zero padding after the mixed-mode entry
// table, which 64-bit firmware never reads), so the kernel still boots but
// its Authenticode digest differs from the published one.
func (d *device) tamperKernel(slot disklayout.Slot) {
	d.t.Helper()
	p := partition(d.t, d.man, disklayout.NameESP)
	esp := extractPartition(d.t, d.disk, p)
	k := filepath.Join(d.dir, "vmlinuz")
	src := "::" + bootentry.SlotKernel(slot)
	run(d.t, "mcopy", "-n", "-i", esp, src, k)
	data, err := os.ReadFile(k)
	if err != nil {
		d.t.Fatal(err)
	}
	off := compatEnd(d.t, data) - 1
	if data[off] != 0 {
		d.t.Fatalf("vmlinuz: byte %#x of .compat is %#x, expected padding", off, data[off])
	}
	data[off] = 0x5a
	os.WriteFile(k, data, 0o644)
	run(d.t, "mcopy", "-o", "-i", esp, k, src)
	in, _ := os.Open(esp)
	defer in.Close()
	disk, err := os.OpenFile(d.disk, os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer disk.Close()
	if _, err := io.Copy(io.NewOffsetWriter(disk, p.Start), in); err != nil {
		d.t.Fatal(err)
	}
}

// compatEnd returns the file offset where the PE section .compat ends.
func compatEnd(t *testing.T, pe []byte) int {
	t.Helper()
	le := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 | int(b[3])<<24 }
	off := le(pe[0x3c:])
	n := int(pe[off+6]) | int(pe[off+7])<<8
	opt := int(pe[off+20]) | int(pe[off+21])<<8
	for i := range n {
		s := pe[off+24+opt+40*i:]
		if strings.TrimRight(string(s[:8]), "\x00") == ".compat" {
			return le(s[20:]) + le(s[16:])
		}
	}
	t.Fatal("vmlinuz has no .compat section")
	return 0
}

// reportFile returns the device's latest verifier report as the fleet
// service keeps it (JSON), or "" when it has none.
func (f *fleet) reportFile(id string) string {
	b, _ := f.srv.Store().LatestAttestation(f.ctx, id)
	return string(b)
}

// report returns the device's latest report as kept by the verifier.
func (f *fleet) report(id string) *attest.Report {
	f.t.Helper()
	var r attest.Report
	if err := json.Unmarshal([]byte(f.reportFile(id)), &r); err != nil {
		f.t.Fatalf("report of %s: %v", id, err)
	}
	return &r
}

// keepReport writes the device's latest report (JSON, and Markdown made
// from it) to -attest-docs as name.json and name.md.
func (f *fleet) keepReport(id, name string) {
	f.t.Helper()
	if *attestDocs == "" {
		return
	}
	var md bytes.Buffer
	f.report(id).WriteMarkdown(&md)
	os.WriteFile(filepath.Join(*attestDocs, name+".md"), md.Bytes(), 0o644)
	os.WriteFile(filepath.Join(*attestDocs, name+".json"), []byte(f.reportFile(id)), 0o644)
}

package attest_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/attest/attesttest"
	"github.com/plumb-os/plumb/format/attestapi"
)

// A real firmware log (GCE shielded VM: shim, GRUB, kernel) replayed into
// the simulator's PCRs: the log verifies against a real quote, and the
// boot chain is read out of it.
func TestRealEventLogReplays(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"))
	if err != nil {
		t.Fatal(err)
	}
	events, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatalf("ParseEventLog: %v", err)
	}
	rw := attesttest.Simulator(t, 2)
	var apps []string
	for _, e := range events {
		if e.Type == attesttest.EvNoAction {
			continue
		}
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.Index), tpm2.AlgSHA256, e.Digest, ""); err != nil {
			t.Fatal(err)
		}
		if e.Index == 4 && e.Type == attesttest.EvEFIBootServicesApplication {
			apps = append(apps, hex.EncodeToString(e.Digest))
		}
	}
	if len(apps) != 2 {
		t.Fatalf("the sample has %d EFI applications in PCR 4, want 2 (shim, grub)", len(apps))
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	writeFile(t, logPath, raw)
	dev, err := attest.NewDevice(rw, "", attest.WithDeviceID("gce-vm"), attest.WithEventLog(logPath), attest.WithPlumbLog(filepath.Join(dir, "none")))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	n := []byte("a fresh nonce 01")
	ev, err := dev.Evidence(t.Context(), n, attestapi.Release{Version: "21.04", Hardware: "gce"})
	if err != nil {
		t.Fatal(err)
	}
	// Here the "bootloader" is shim and the "kernel" GRUB: the two EFI
	// applications the firmware started (GRUB measures the kernel itself).
	refs := attest.References{Bootloader: apps[0], Kernel: apps[1]}
	rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
	for name, want := range map[string]string{
		attest.CheckQuoteSignature: attest.StatusPassed,
		attest.CheckPCRDigest:      attest.StatusPassed,
		attest.CheckEventLog:       attest.StatusPassed,
		attest.CheckBootloader:     attest.StatusPassed,
		attest.CheckKernel:         attest.StatusPassed,
	} {
		if c := rep.Check(name); c.Status != want {
			t.Errorf("%s = %s (%s / %s / %s), want %s", name, c.Status, c.Expected, c.Actual, c.Detail, want)
		}
	}
	// A reference for a kernel that did not run fails, naming what ran.
	refs.Kernel = hex.EncodeToString(make([]byte, 32))
	rep = attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
	if c := rep.Check(attest.CheckKernel); c.Status != attest.StatusFailed || c.Actual != apps[1] {
		t.Errorf("kernel check = %+v, want failed with GRUB's digest as actual", c)
	}
	if c := rep.Check(attest.CheckEventLog); c.Actual == "" || !strings.HasSuffix(c.Actual, "events replayed") {
		t.Errorf("event_log actual = %q", c.Actual)
	}
}

func TestParseEventLogRejectsGarbage(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":     {},
		"garbage":   []byte("this is not an event log at all, just text"),
		"truncated": raw[:len(raw)/2+3],
		"header":    raw[:40],
	} {
		if _, err := attest.ParseEventLog(b); err == nil {
			t.Errorf("%s: ParseEventLog succeeded, want an error", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
	}
}

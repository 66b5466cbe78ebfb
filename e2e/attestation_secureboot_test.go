package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/testvm"
)

// snakeoilSubject is the subject of OVMF's snakeoil certificate, which
// signs the test builds and is enrolled as PK, KEK and db.
const snakeoilSubject = "O=SnakeOil,L=Fort Collins,ST=Colorado,C=US"

// attestationAfter waits for the device's attestation verdict for version
// after mark and returns the report the fleet's verifier kept for it.
func attestationAfter(t *testing.T, f *fleet, d *device, mark testvm.Mark, version string) *attest.Report {
	t.Helper()
	line := d.waitFor(mark, `attestation verdict" verdict=(\S+) failed=(\S*) release=`+regexp.QuoteMeta(version)+` device=(\S+)`)
	r := f.report(line[3])
	if r.Release != version {
		t.Errorf("attestation report for release %s, want %s", r.Release, version)
	}
	return r
}

// expectSecureBootAttested checks the attestation of a Secure Boot UKI
// boot of build (slot) against its published reference values: every
// check passes, among them Secure Boot on with the snakeoil keys, the
// slot's UKI in PCR 4, its .cmdline in PCR 11 and the build's verity root
// hash. With docs set, the report is kept under -attest-docs as docs.
func expectSecureBootAttested(t *testing.T, f *fleet, d *device, mark testvm.Mark, build, slot, docs string) {
	t.Helper()
	man, err := builder.ReadManifest(filepath.Join(build, builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	r := attestationAfter(t, f, d, mark, man.Version)
	if r.Verdict != attest.VerdictPassed || len(r.Checks) != 15 {
		t.Errorf("%s: verdict %s with %d checks, failed %v; want passed, 15\n%s", man.Version, r.Verdict, len(r.Checks), r.Failed(), f.reportFile(r.DeviceID))
	}
	for _, c := range r.Checks {
		if c.Status != attest.StatusPassed {
			t.Errorf("%s: check %s %s: expected %q, actual %q: %s", man.Version, c.Name, c.Status, c.Expected, c.Actual, c.Detail)
		}
	}
	if man.Measured == nil || man.Measured.SecureBoot == nil || man.Measured.UKI[slot] == "" || man.Verity == nil {
		t.Fatalf("%s: the manifest lacks the Secure Boot reference values: %+v", man.Version, man.Measured)
	}
	if c := r.Check(attest.CheckSecureBoot); c == nil || !strings.HasPrefix(c.Actual, "SecureBoot=1; PK: "+snakeoilSubject) ||
		!strings.Contains(c.Actual, "boot chain verified by: "+snakeoilSubject) || !strings.Contains(c.Expected, man.Measured.SecureBoot.DB.SHA256[:16]) {
		t.Errorf("%s: secure_boot check %+v: want Secure Boot on, verified by the snakeoil db certificate", man.Version, c)
	}
	if c := r.Check(attest.CheckKernel); c == nil || c.Actual != man.Measured.UKI[slot] {
		t.Errorf("%s: kernel check %+v: want slot %s's UKI %s", man.Version, c, slot, man.Measured.UKI[slot])
	}
	if c := r.Check(attest.CheckVerityRoot); c == nil || c.Expected != man.Verity.RootHash || c.Actual != man.Verity.RootHash {
		t.Errorf("%s: verity_root check %+v: want %s", man.Version, c, man.Verity.RootHash)
	}
	if docs != "" {
		f.keepReport(r.DeviceID, docs)
	}
}

// expectSecureBootOffAttested checks the attestation of a boot of build
// with Secure Boot off (OVMF without Secure Boot, the same disk): the
// secure_boot check fails with the expected and the actual state, and
// the verity root hash, still read from the signed UKI's .cmdline, passes.
// It belongs after the device in such a boot has attested (plumbd does
// after every boot): e2e TestSecureBootVM's Secure-Boot-off boot.
func expectSecureBootOffAttested(t *testing.T, f *fleet, d *device, mark testvm.Mark, build, docs string) {
	t.Helper()
	man, err := builder.ReadManifest(filepath.Join(build, builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	r := attestationAfter(t, f, d, mark, man.Version)
	if r.Verdict != attest.VerdictFailed || strings.Join(r.Failed(), ",") != attest.CheckSecureBoot {
		t.Errorf("Secure Boot off: verdict %s, failed %v; want failed, secure_boot only\n%s", r.Verdict, r.Failed(), f.reportFile(r.DeviceID))
	}
	if c := r.Check(attest.CheckSecureBoot); c == nil || !strings.HasPrefix(c.Expected, "SecureBoot=1;") || !strings.HasPrefix(c.Actual, "SecureBoot=0 (off);") || !strings.Contains(c.Detail, "Secure Boot is off") {
		t.Errorf("Secure Boot off: secure_boot check %+v: want failed, expected SecureBoot=1, actual SecureBoot=0", c)
	}
	if c := r.Check(attest.CheckVerityRoot); c == nil || c.Status != attest.StatusPassed || c.Actual != man.Verity.RootHash {
		t.Errorf("Secure Boot off: verity_root check %+v: want passed with %s", c, man.Verity.RootHash)
	}
	if docs != "" {
		f.keepReport(r.DeviceID, docs)
	}
}

package e2e

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/xts"

	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
)

// The sealed data partition's part of TestSecureBootVM (its own file, so
// that the attestation checks of the same test merge without conflicts).

// sealedData makes a build's /data a LUKS2 volume sealed to the TPM
// (partitions.data_encryption) and gives it two hooks: before installing
// a release the running one writes /data/canary; the new release's
// first-boot hook reads it, so a trial whose /data did not unlock fails
// and rolls back.
func sealedData(text string) string {
	text = strings.Replace(text, "\n  data: 64MiB\n", "\n  data: 64MiB\n  data_encryption: luks2-tpm\n", 1)
	text = strings.Replace(text, "\nfiles:\n", "\nfiles:\n"+canaryFiles, 1)
	return strings.Replace(text, "\nagent:\n", "\nagent:\n  hooks:\n    pre-install: {run: /usr/bin/canary-write}\n    first-boot: {run: /usr/bin/canary-read}\n", 1)
}

const canaryFiles = `  - path: /usr/bin/canary-write
    mode: "0755"
    content: |
      #!/bin/sh
      echo "written by $PLUMB_RUNNING before installing $PLUMB_VERSION" > /data/canary && sync
  - path: /usr/bin/canary-read
    mode: "0755"
    content: |
      #!/bin/sh
      cat /data/canary && grep -q "before installing $PLUMB_VERSION" /data/canary
`

// recoveryKeyRE is plumb-init's line on a boot that created the volume
// (the first boot of a flashed disk, or of a disk installed with Secure
// Boot off).
var recoveryKeyRE = `data partition encrypted and sealed to this TPM.* recovery_key=([0-9a-f]{8}(?:-[0-9a-f]{8}){7})`

// checkRecoveryKey is what an operator does with the recovery key printed
// at the first boot (docs/verified-boot.md): real cryptsetup opens the
// data partition's keyslot 0 with it (here: dumps the volume key, as the
// host has no dm-crypt), and the filesystem behind it holds the canary.
// The VM must be off.
func checkRecoveryKey(t *testing.T, d *device, key, wantCanary string) {
	t.Helper()
	part := extractPartition(t, d.disk, partition(t, d.man, disklayout.NameData))
	keyFile := filepath.Join(t.TempDir(), "recovery-key")
	os.WriteFile(keyFile, []byte(key), 0o600)
	out, err := exec.Command("cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, part).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup with the recovery key: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?s)MK dump:\s*(.*?)\n\S`).FindSubmatch(append(out, "\nX"...))
	if m == nil {
		t.Fatalf("cryptsetup luksDump: no volume key in:\n%s", out)
	}
	vk, err := hex.DecodeString(strings.Join(strings.Fields(string(m[1])), ""))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	c, err := xts.NewCipher(aes.NewCipher, vk)
	if err != nil {
		t.Fatal(err)
	}
	seg := enc[datapart.SegmentOffset:]
	plain := make([]byte, len(seg))
	for i := 0; i*512 < len(seg); i++ {
		c.Decrypt(plain[i*512:(i+1)*512], seg[i*512:(i+1)*512], uint64(i))
	}
	if bytes.Contains(enc, []byte(wantCanary)) {
		t.Errorf("the data partition holds %q in plain text", wantCanary)
	}
	fs := filepath.Join(t.TempDir(), "data.ext4")
	os.WriteFile(fs, plain, 0o600)
	got, err := exec.Command("debugfs", "-R", "cat /canary", fs).Output()
	if err != nil || !strings.Contains(string(got), wantCanary) {
		t.Errorf("the filesystem opened with the recovery key: /canary = %q (%v), want %q", got, err, wantCanary)
	}
}

// bootWithSecureBootOff powers the device on with OVMF's plain build and
// fresh vars (Secure Boot off, no keys), the same disk and TPM: the TPM
// must refuse /data, and the device must say why on its console, in
// plumbd status and in the status report the server keeps. Its attestation
// report fails the Secure Boot state check (expectSecureBootOffAttested;
// build is the release it runs).
func bootWithSecureBootOff(t *testing.T, f *fleet, d *device, build string) {
	t.Helper()
	if err := os.Rename(filepath.Join(d.dir, "OVMF_VARS.fd"), filepath.Join(d.dir, "OVMF_VARS.secureboot.fd")); err != nil {
		t.Fatal(err)
	}
	d.secureBoot = false
	vm := d.powerOn()
	const why = `data partition sealed: Secure Boot is off \(PCR 7 mismatch\)`
	d.waitFor(0, `data partition not unlocked: booting with an empty tmpfs on /data" device=/dev/vda4 err="`+why)
	d.waitFor(0, `plumb: status .*"data_encryption":"luks2-tpm"`)
	d.waitFor(0, `plumb: status .*"data_error":"`+why)
	if strings.Contains(vm.Console(), "data partition unlocked") {
		t.Errorf("/data unlocked with Secure Boot off")
	}
	want := regexp.MustCompile(`"data_mounted":\s*false,\s*"data_error":\s*"` + why)
	var rep string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if reps := f.reports(); len(reps) == 1 {
			if rep = reps[0]; want.MatchString(rep) {
				break
			}
		}
	}
	expectSecureBootOffAttested(t, f, d, 0, build, "attestation-report-secureboot-off")
	vm.Close()
	if !want.MatchString(rep) {
		t.Errorf("the device's status report lacks why /data is sealed:\n%s", rep)
	}
}

// logDataUnlock logs plumb-init's timings of /data from a VM's console:
// the first boot's creation of the volume and each unlock (the figures in
// docs/verified-boot.md).
func logDataUnlock(t *testing.T, console string) {
	t.Helper()
	re := regexp.MustCompile(`msg="(data partition encrypted and sealed to this TPM|data partition unlocked)[^"]*".*? ms=(\d+)`)
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		t.Logf("/data: %s: %s ms", m[1], m[2])
	}
}

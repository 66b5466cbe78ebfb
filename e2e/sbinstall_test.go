package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/testvm"
)

// The installer's part of TestSecureBootVM (its own file, so that the
// other parts of the test merge without conflicts).

// installerSealRE is plumbd install's line when it created the sealed data
// volume: PCR 7 as the installer booted, seconds, and the recovery key.
var installerSealRE = `plumb-install: \[[ \d.]+s\] data partition encrypted and sealed to this TPM \(PCR 7 ([0-9a-f]{64}), PCR 15 zero\) in ([\d.]+)s; .*recovery_key=([0-9a-f]{8}(?:-[0-9a-f]{8}){7})`

// withoutFirstBootCheck drops sealedData's first-boot hook: the installed
// release's own first boot has no canary to read.
func withoutFirstBootCheck(text string) string {
	return strings.Replace(text, "    first-boot: {run: /usr/bin/canary-read}\n", "", 1)
}

// installUnderSecureBoot makes a device the way a technician would: a
// blank disk (the size of the build's disk.img) as the VM's first disk,
// the build's installer.img (the USB stick) as its second, OVMF's Secure
// Boot build with the snakeoil keys and swtpm. OVMF finds nothing on the
// blank disk and boots the stick: signed systemd-boot, then the
// installer's signed UKI; `plumbd install --disk auto` writes the blank
// disk, creates the sealed /data and reboots, and the same VM boots the
// installed disk (its ESP comes first now). It checks, on the console:
// the installer ran under Secure Boot, created and sealed the volume
// (PCR 7 logged), and the installed system's first boot unlocked it
// (plumb-init logs PCR 7: the same) without creating anything. It returns
// the device, its VM running the installed release, and the recovery key.
func (f *fleet) installUnderSecureBoot(t *testing.T, build, name string) (*device, string) {
	t.Helper()
	d := &device{t: t, f: f, dir: filepath.Join(f.work, "vm-"+name), secureBoot: true}
	os.MkdirAll(d.dir, 0o755)
	var err error
	if d.man, err = builder.ReadManifest(filepath.Join(build, builder.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	d.disk = filepath.Join(d.dir, "disk.img")
	blankDisk(t, d.disk, fileSize(t, filepath.Join(build, builder.DiskFile)))
	stick := filepath.Join(d.dir, "stick.img")
	if err := testvm.CopyImage(stick, filepath.Join(build, builder.InstallerDiskFile)); err != nil {
		t.Fatal(err)
	}
	vm, err := testvm.Start(f.ctx, d.dir, testvm.WithDisk(d.disk), testvm.WithDisk(stick),
		testvm.WithTPM(), testvm.WithGuestForward(443, f.port), testvm.WithSecureBoot())
	if err != nil {
		t.Fatal(err)
	}
	d.vm = vm
	t.Cleanup(func() { vm.Close() })

	d.waitFor(0, `plumb-install: Secure Boot on`)
	d.waitFor(0, `plumb-installer: plumbd install --disk auto`)
	seal := d.waitFor(0, installerSealRE)
	d.waitFor(0, `plumb-install: 1\.0\.0 installed on /dev/vda: rebooting`)
	installed := time.Since(vm.Started())
	con := vm.Console()
	for _, line := range strings.Split(con, "\n") {
		if strings.HasPrefix(line, "plumb-install") {
			t.Log(strings.TrimSpace(line))
		}
	}
	// The firmware ran the installer's UKI (only a signed one runs under
	// OVMF's Secure Boot build), whose kernel's EFI stub saw Secure Boot on.
	if !strings.Contains(con, "EFI stub: UEFI Secure Boot is enabled.") {
		t.Errorf("the installer's kernel did not report Secure Boot enabled")
	}
	if !regexp.MustCompile(`plumb-install: \[.*\] ESP written: systemd-boot, slot a's signed UKI, entry plumb-1\.0\.0\+3\.conf`).MatchString(con) {
		t.Errorf("the installer did not write slot a's signed UKI and its entry")
	}
	mark := vm.Mark()
	unlocked := d.waitFor(mark, `data partition unlocked" device=/dev/mapper/plumb-data pcr7=([0-9a-f]{64})`)
	if unlocked[1] != seal[1] {
		t.Errorf("PCR 7 on the first boot %s, in the installer %s: the installer sealed to a PCR 7 the installed chain does not give", unlocked[1], seal[1])
	}
	if after := vm.Console()[len(con):]; regexp.MustCompile(recoveryKeyRE).MatchString(after) {
		t.Errorf("plumb-init created the data volume again on the first boot")
	}
	t.Logf("installer under Secure Boot: power-on to reboot %.1fs (sealing /data %ss); PCR 7 %s in the installer and on the first boot", installed.Seconds(), seal[2], seal[1])
	return d, seal[3]
}

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

// installSecureReleaseOnHost runs the real `plumbd install` on the host
// (the installer initramfs of build, unpacked) for the newest release, a
// Secure Boot one built from build's recipe, onto blank disk files: the
// ESP gets slot a's signed UKI (the build's uki-a.efi, byte for byte) and
// the entry that starts it, no kernel or initrd; without a TPM or Secure
// Boot the data partition stays unprovisioned and the console says why.
// Then the published UKI is tampered with: the install stops before the
// partition table (exit 3) and the disk stays all zeros.
func installSecureReleaseOnHost(t *testing.T, f *fleet, build string) {
	t.Helper()
	man, err := builder.ReadManifest(filepath.Join(build, builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	root := f.installerRoot(t, build)
	disk := filepath.Join(t.TempDir(), "disk.img")
	blankDisk(t, disk, 1<<30)
	code, out := plumbdInstall(t, root, "--disk", disk)
	if code != 0 {
		t.Fatalf("plumbd install of %s = exit %d:\n%s", man.Version, code, out)
	}
	if !strings.Contains(out, "ESP written: systemd-boot, slot a's signed UKI, entry plumb-"+man.Version+"+3.conf") ||
		!strings.Contains(out, "data partition left unprovisioned: the installer booted with Secure Boot off") {
		t.Errorf("plumbd install on the host:\n%s\nwant slot a's signed UKI written and the data partition left to plumb-init (Secure Boot off)", out)
	}
	esp := extractPartition(t, disk, partition(t, man, "ESP"))
	got := filepath.Join(t.TempDir(), "uki.efi")
	run(t, "mcopy", "-i", esp, "::/plumb/a/uki.efi", got)
	if sha256File(t, got) != sha256File(t, filepath.Join(build, builder.UKIFile("a"))) {
		t.Errorf("the installed ESP's /plumb/a/uki.efi is not %s's %s", man.Version, builder.UKIFile("a"))
	}
	entry := run(t, "mtype", "-i", esp, "::/loader/entries/plumb-"+man.Version+"+3.conf")
	if !strings.Contains(entry, "\nefi /plumb/a/uki.efi\n") || strings.Contains(entry, "linux ") {
		t.Errorf("the installed trial entry:\n%s\nwant it to start slot a's UKI", entry)
	}
	if strings.Contains(run(t, "mdir", "-b", "-i", esp, "::/plumb/a"), "vmlinuz") {
		t.Errorf("the installed ESP holds a kernel beside the UKI")
	}

	// A tampered UKI target: refused before the partition table.
	f.tamperTarget(t, man.Version, "*.uki-a.efi")
	blankDisk(t, disk, 1<<30)
	code, out = plumbdInstall(t, root, "--disk", disk)
	if code != 3 || !strings.Contains(out, "sha256 mismatch") || !strings.Contains(out, "the partition table was not written") {
		t.Errorf("install with a tampered UKI = exit %d:\n%s\nwant exit 3 naming the sha256 mismatch, before the partition table", code, out)
	}
	if !allZero(t, disk) {
		t.Error("the disk is not all zeros after the refused UKI")
	}
}

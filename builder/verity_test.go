package builder

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"debug/pe"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/authenticode"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/sbkeys"
	"github.com/plumb-os/plumb/builder/uki"
	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/testutil"
)

// TestBuildVerity builds with boot.verity and checks slot A of the disk
// image with veritysetup: the image, its padding and the hash area at the
// manifest's hash offset verify against the manifest's root hash, which is
// on the boot entry's command line.
func TestBuildVerity(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		if testing.Short() {
			t.Skip("veritysetup not installed (apt-get install cryptsetup-bin)")
		}
		t.Fatal("veritysetup not installed: apt-get install cryptsetup-bin (make deps)")
	}
	out := filepath.Join(t.TempDir(), "out")
	m, err := buildIn(t, smallRecipe+"boot: {verity: true}\n", map[string][]byte{"root/big": randomBytes(3 << 20)}, out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verity == nil {
		t.Fatal("manifest has no verity facts")
	}
	p, err := m.Verity.Params("verity")
	if err != nil {
		t.Fatal(err)
	}
	var rootfs Artifact
	for _, a := range m.Artifacts {
		if a.Name == RootfsFile {
			rootfs = a
		}
	}
	if p.DataBlocks != verity.DataBlocksFor(rootfs.Size) || m.Verity.Salt != rootfs.SHA256 {
		t.Errorf("verity %+v for a rootfs of %d bytes with sha256 %s", m.Verity, rootfs.Size, rootfs.SHA256)
	}
	if !strings.Contains(m.Cmdline, p.Cmdline()) {
		t.Errorf("cmdline %q lacks %q", m.Cmdline, p.Cmdline())
	}
	if _, err := os.Stat(filepath.Join(out, VerityFile)); err != nil {
		t.Errorf("output %s: %v", VerityFile, err)
	}

	// Slot A out of the disk image, as the device sees the partition.
	part := m.Partitions[1]
	disk, err := os.Open(filepath.Join(out, DiskFile))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	slotPath := filepath.Join(t.TempDir(), "slot-a")
	sf, err := os.Create(slotPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sf, io.NewSectionReader(disk, part.Start, part.Size)); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	verify := func() error {
		b, err := exec.Command(vs, "verify", slotPath, slotPath, m.Verity.RootHash, fmt.Sprintf("--hash-offset=%d", p.HashOffset)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	if err := verify(); err != nil {
		t.Fatalf("veritysetup verify of slot A: %v", err)
	}
	// One flipped byte in the image's last block is found.
	f, err := os.OpenFile(slotPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x5a}, rootfs.Size-1)
	f.Close()
	if err := verify(); err == nil {
		t.Errorf("veritysetup verify passed a slot with a flipped byte")
	}
}

// TestCheckSizesVerity: a root partition with room for the image but not
// for its tree is refused with the recipe's field.
func TestCheckSizesVerity(t *testing.T) {
	r, err := recipe.Parse("r.yaml", []byte(smallRecipe+"boot: {verity: true}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.sqfs")
	size := int64(r.Partitions.Root) - 20<<10 // the tree of 16 MiB takes 36 KiB
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	b := &build{r: r, rootfsPath: img}
	if err := b.checkSizes(nil); err != nil {
		t.Fatalf("without verity: %v", err)
	}
	b.verity = &verity.Params{}
	err = b.checkSizes(nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml: partitions.root: 16MiB is too small for the root filesystem image and its verity hash tree") {
		t.Fatalf("err = %v", err)
	}
}

// TestBuildSecureBoot builds with boot.secure_boot (and a sealed data
// partition) and checks with sbverify that the ESP's systemd-boot and both
// slots' UKIs carry the owner's db signature (and not another's), that
// each UKI's .cmdline boots its slot through verity and asks for the sealed
// /data, that slot A's entry starts its UKI, and that the data partition
// is written unprovisioned. Without a key, data_encryption is one error.
func TestBuildSecureBoot(t *testing.T) {
	testutil.RequireTool(t, "sbverify", "sbsigntool")
	testutil.RequireTool(t, "objcopy", "binutils")
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := sbkeys.Generate(keys, "Test Owner", time.Now()); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if _, err := sbkeys.Generate(other, "Someone Else", time.Now()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	text := smallRecipe + "  data_encryption: luks2-tpm\n" + fmt.Sprintf("boot:\n  verity: true\n  secure_boot: {key: %s, cert: %s, pk: %s, kek: %s}\n",
		filepath.Join(keys, "db.key"), filepath.Join(keys, "db.crt"), filepath.Join(keys, "PK.crt"), filepath.Join(keys, "KEK.crt"))
	// A PE file stands in for the kernel (it is never booted here), so
	// that the build computes its reference values for attestation.
	pe32, err := os.ReadFile("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		t.Fatalf("a PE file to stand in for the kernel (apt-get install systemd-boot-efi): %v", err)
	}
	m, err := buildIn(t, text, map[string][]byte{"vmlinuz": pe32}, out)
	if err != nil {
		t.Fatal(err)
	}
	// The reference values: each slot's UKI by its Authenticode digest and
	// .cmdline, the owner's db, PK and KEK certificates.
	if m.Measured == nil || m.Measured.SecureBoot == nil {
		t.Fatalf("manifest measured = %+v, want UKI and Secure Boot reference values", m.Measured)
	}
	for name, got := range map[string]*release.Cert{"db": &m.Measured.SecureBoot.DB, "PK": m.Measured.SecureBoot.PK, "KEK": m.Measured.SecureBoot.KEK} {
		b, err := os.ReadFile(filepath.Join(keys, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s.crt: not PEM", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(c.Raw)); got == nil || got.SHA256 != want || got.Subject != c.Subject.String() {
			t.Errorf("measured.secure_boot %s = %+v, want sha256 %s, subject %s", name, got, want, c.Subject)
		}
	}
	p, err := m.Verity.Params("verity")
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(keys, "db.crt")
	for _, slot := range []string{"a", "b"} {
		img := filepath.Join(out, UKIFile(slot))
		if err := uki.Verify(t.Context(), cert, img); err != nil {
			t.Errorf("sbverify %s: %v", UKIFile(slot), err)
		}
		if err := uki.Verify(t.Context(), filepath.Join(other, "db.crt"), img); err == nil {
			t.Errorf("sbverify %s with another owner's certificate passed", UKIFile(slot))
		}
		f, err := pe.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := f.Section(".cmdline").Data()
		f.Close()
		cmdline := strings.TrimRight(string(data), "\x00")
		if !strings.Contains(cmdline, "plumb.slot="+slot+" "+p.Cmdline()) || !strings.HasSuffix(cmdline, " plumb.data=luks2-tpm") || !strings.Contains(cmdline, "root=PARTUUID="+m.Partitions[map[string]int{"a": 1, "b": 2}[slot]].PartUUID) {
			t.Errorf("%s .cmdline = %q", UKIFile(slot), cmdline)
		}
		if m.Measured.Cmdline[slot] != cmdline {
			t.Errorf("measured.cmdline.%s = %q, want the UKI's .cmdline %q", slot, m.Measured.Cmdline[slot], cmdline)
		}
		fi, _ := os.Stat(img)
		in, _ := os.Open(img)
		sum, err := authenticode.SHA256(in, fi.Size())
		in.Close()
		if err != nil || m.Measured.UKI[slot] != fmt.Sprintf("%x", sum) {
			t.Errorf("measured.uki_authenticode.%s = %s, want %x (%v)", slot, m.Measured.UKI[slot], sum, err)
		}
	}
	// The ESP of the disk image: signed systemd-boot, slot A's UKI, and an
	// entry that starts it.
	esp := filepath.Join(t.TempDir(), "esp")
	extract(t, filepath.Join(out, DiskFile), m.Partitions[0], esp)
	boot := filepath.Join(t.TempDir(), "BOOTX64.EFI")
	mcopy(t, esp, "::/EFI/BOOT/BOOTX64.EFI", boot)
	if err := uki.Verify(t.Context(), cert, boot); err != nil {
		t.Errorf("sbverify the ESP's systemd-boot: %v", err)
	}
	ukiA := filepath.Join(t.TempDir(), "uki.efi")
	mcopy(t, esp, "::/plumb/a/uki.efi", ukiA)
	if sha(t, ukiA) != sha(t, filepath.Join(out, UKIFile("a"))) {
		t.Errorf("the ESP's /plumb/a/uki.efi is not %s", UKIFile("a"))
	}
	// The sealed data partition ships unprovisioned (format/datapart).
	data := filepath.Join(t.TempDir(), "data")
	extract(t, filepath.Join(out, DiskFile), m.Partitions[3], data)
	if b, _ := os.ReadFile(data); !datapart.IsMarker(b) {
		t.Errorf("the data partition does not start with the unprovisioned marker: %q", b[:32])
	} else if _, err := datapart.DecodeMarker(b[:datapart.MarkerSize], m.Partitions[3].Size); err != nil {
		t.Error(err)
	}
	entry := filepath.Join(t.TempDir(), "entry")
	mcopy(t, esp, "::/loader/entries/plumb-1.0.0.conf", entry)
	if b, _ := os.ReadFile(entry); !strings.Contains(string(b), "\nefi /plumb/a/uki.efi\n") || strings.Contains(string(b), "linux ") {
		t.Errorf("slot A's entry:\n%s", b)
	}

	// The installer: its own UKI (the installer initramfs and command
	// line), signed, started by installer.img's signed systemd-boot.
	inst := filepath.Join(out, InstallerUKIFile)
	if err := uki.Verify(t.Context(), cert, inst); err != nil {
		t.Errorf("sbverify %s: %v", InstallerUKIFile, err)
	}
	if err := uki.Verify(t.Context(), filepath.Join(other, "db.crt"), inst); err == nil {
		t.Errorf("sbverify %s with another owner's certificate passed", InstallerUKIFile)
	}
	pf, err := pe.Open(inst)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := pf.Section(".cmdline").Data()
	initrd, _ := pf.Section(".initrd").Data()
	pf.Close()
	if !strings.HasPrefix(string(cl), "plumb.disk=auto ") {
		t.Errorf("%s .cmdline = %q, want plumb.disk=auto first", InstallerUKIFile, cl)
	}
	if want, _ := os.ReadFile(filepath.Join(out, InstallerInitrdFile)); !bytes.Equal(initrd[:min(len(initrd), len(want))], want) {
		t.Errorf("%s .initrd is not %s", InstallerUKIFile, InstallerInitrdFile)
	}
	usb := filepath.Join(out, InstallerDiskFile)
	fi, err := os.Stat(usb)
	if err != nil {
		t.Fatal(err)
	}
	usbESP := filepath.Join(t.TempDir(), "usb-esp")
	extract(t, usb, Partition{Start: 1 << 20, Size: fi.Size() - 2<<20}, usbESP)
	usbBoot := filepath.Join(t.TempDir(), "usb-BOOTX64.EFI")
	mcopy(t, usbESP, "::/EFI/BOOT/BOOTX64.EFI", usbBoot)
	if err := uki.Verify(t.Context(), cert, usbBoot); err != nil {
		t.Errorf("sbverify installer.img's systemd-boot: %v", err)
	}
	usbUKI := filepath.Join(t.TempDir(), "installer.efi")
	mcopy(t, usbESP, "::/installer/installer.efi", usbUKI)
	if sha(t, usbUKI) != sha(t, inst) {
		t.Errorf("installer.img's /installer/installer.efi is not %s", InstallerUKIFile)
	}
	mcopy(t, usbESP, "::/loader/entries/plumb-installer.conf", entry)
	if b, _ := os.ReadFile(entry); !strings.Contains(string(b), "\nefi /installer/installer.efi\n") || strings.Contains(string(b), "linux ") {
		t.Errorf("installer.img's entry:\n%s", b)
	}
}

func TestBuildSealedDataNeedsKey(t *testing.T) {
	text := smallRecipe + "  data_encryption: luks2-tpm\nboot: {verity: true}\n"
	_, err := buildIn(t, text, map[string][]byte{}, filepath.Join(t.TempDir(), "out"))
	if err == nil || !strings.Contains(err.Error(), `partitions.data_encryption: "luks2-tpm" seals /data to the Secure Boot state (PCR 7): expected a Secure Boot key`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v", err)
	}
}

func extract(t *testing.T, disk string, p Partition, dst string) {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
}

func mcopy(t *testing.T, img, src, dst string) {
	t.Helper()
	if out, err := exec.Command("mcopy", "-n", "-i", img, src, dst).CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s: %v: %s", src, err, out)
	}
}

func sha(t *testing.T, p string) string {
	t.Helper()
	d, err := digestFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return d.SHA256
}

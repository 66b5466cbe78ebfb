package authenticode

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// unpack extracts the files matching glob from a cached Debian package.
func unpack(t *testing.T, debGlob, fileGlob string) string {
	t.Helper()
	testutil.RequireTool(t, "dpkg-deb", "dpkg")
	debs, _ := filepath.Glob(filepath.Join(testutil.CacheDir(t), "debs", debGlob))
	if len(debs) == 0 {
		msg := "no " + debGlob + " in the package cache: run make debs"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "$3"`, "sh", debs[0], dir, fileGlob)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v: %s", debs[0], err, out)
	}
	got, _ := filepath.Glob(filepath.Join(dir, fileGlob))
	if len(got) != 1 {
		t.Fatalf("%s: expected one %s, found %d", debs[0], fileGlob, len(got))
	}
	return got[0]
}

func digestFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	sum, err := SHA256(f, fi.Size())
	if err != nil {
		t.Fatalf("SHA256(%s): %v", path, err)
	}
	// The fuzz target's reference must agree on real images too.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if ref, ok, _ := referenceDigest(b); !ok || !bytes.Equal(ref, sum) {
		t.Errorf("referenceDigest(%s) = %x (ok %v), SHA256 = %x", path, ref, ok, sum)
	}
	return hex.EncodeToString(sum)
}

var calculatedRE = regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]{64})`)

// osslsigncode is the independent implementation: it prints the digest it
// calculates for a signed image.
func osslsigncode(t *testing.T, path string) string {
	t.Helper()
	bin := testutil.RequireTool(t, "osslsigncode", "osslsigncode")
	out, _ := exec.Command(bin, "verify", "-in", path).CombinedOutput() // fails: untrusted signer
	m := calculatedRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("osslsigncode verify %s printed no calculated digest:\n%s", path, out)
	}
	return strings.ToLower(string(m[1]))
}

// TestKernel: Debian's signed cloud kernel, against osslsigncode.
func TestKernel(t *testing.T) {
	k := unpack(t, "linux-image-6.1.0-56-cloud-amd64_*.deb", "./boot/vmlinuz-*")
	if got, want := digestFile(t, k), osslsigncode(t, k); got != want {
		t.Errorf("SHA256(vmlinuz) = %s, osslsigncode calculates %s", got, want)
	}
}

// TestSystemdBoot: the unsigned systemd-boot, against the digest OVMF
// logged when it started it (testdata/ovmf-eventlog.bin is the UEFI event
// log of a demo VM, /sys/kernel/security/tpm0/binary_bios_measurements);
// and the same binary signed with a throwaway key, against osslsigncode.
func TestSystemdBoot(t *testing.T) {
	sb := unpack(t, "systemd-boot-efi_252*.deb", "./usr/lib/systemd/boot/efi/systemd-bootx64.efi")
	got := digestFile(t, sb)
	log, err := os.ReadFile("testdata/ovmf-eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := hex.DecodeString(got)
	if !bytes.Contains(log, d) {
		t.Errorf("SHA256(systemd-bootx64.efi) = %s: not in the VM's UEFI event log", got)
	}

	openssl := testutil.RequireTool(t, "openssl", "openssl")
	dir := t.TempDir()
	key, cert, signed := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "signed.efi")
	if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=plumb test", "-days", "1").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v: %s", err, out)
	}
	if out, err := exec.Command("osslsigncode", "sign", "-certs", cert, "-key", key, "-in", sb, "-out", signed).CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode sign: %v: %s", err, out)
	}
	if got, want := digestFile(t, signed), osslsigncode(t, signed); got != want {
		t.Errorf("SHA256(signed systemd-boot) = %s, osslsigncode calculates %s", got, want)
	}
}

func TestNotPE(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     {},
		"text":      []byte("hello, world: not an EFI application at all, just some text padding it out to 64 bytes"),
		"MZ only":   append([]byte("MZ"), make([]byte, 100)...),
		"PE offset": append(append([]byte("MZ"), make([]byte, 58)...), 0xff, 0xff, 0xff, 0x7f),
	} {
		if _, err := SHA256(bytes.NewReader(b), int64(len(b))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestReference: the test's reference digest agrees with SHA256 on the
// seed images, and a signed copy has the unsigned image's digest.
func TestReference(t *testing.T) {
	plain, signed := testPE(false), testPE(true)
	for name, b := range map[string][]byte{"plain": plain, "signed": signed} {
		ref, ok, _ := referenceDigest(b)
		if !ok {
			t.Fatalf("%s: debug/pe refuses the test image", name)
		}
		got, err := SHA256(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, ref) {
			t.Errorf("%s: SHA256 %x, reference %x", name, got, ref)
		}
	}
	a, _, _ := referenceDigest(plain)
	b, _, _ := referenceDigest(signed)
	if !bytes.Equal(a, b) {
		t.Errorf("signed and unsigned digests differ: %x, %x", a, b)
	}
}

// FuzzSHA256 feeds mangled images: SHA256 must agree with referenceDigest
// (debug/pe + byte ranges) whenever both accept the image, and accept every
// image the reference accepts (within its 1 MiB header cap). It never
// panics and its errors are one line.
func FuzzSHA256(f *testing.F) {
	f.Add([]byte("MZ"))
	pe := make([]byte, 1024)
	copy(pe, "MZ")
	pe[0x3c] = 0x80
	copy(pe[0x80:], "PE\x00\x00")
	pe[0x80+20] = 0xf0 // optional header size
	pe[0x98], pe[0x99] = 0x0b, 0x02
	f.Add(pe)
	f.Add(testPE(false))
	f.Add(testPE(true))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := SHA256(bytes.NewReader(b), int64(len(b)))
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
		ref, ok, capped := referenceDigest(b)
		switch {
		case !ok:
			// debug/pe refuses it, or its ranges leave the file: nothing
			// to compare with.
		case err != nil && !capped:
			t.Fatalf("SHA256 refuses an image the reference hashes to %x: %v", ref, err)
		case err == nil && !bytes.Equal(got, ref):
			t.Fatalf("SHA256 %x, reference %x", got, ref)
		}
	})
}

package uki

import (
	"bytes"
	"debug/pe"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/sbkeys"
	"github.com/plumb-os/plumb/internal/testutil"
)

const stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
const bootloader = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// kernelImage unpacks the Debian cloud kernel from the package cache.
func kernelImage(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(testutil.CacheDir(t), "debs", "linux-image-6.1.0-56-cloud-amd64_*.deb"))
	if len(m) == 0 {
		msg := "no linux-image-6.1.0-56-cloud-amd64 .deb in the package cache (make debs)"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", m[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	k, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(k) != 1 {
		t.Fatalf("kernel image in the package: %v", k)
	}
	return k[0]
}

// TestAssembleAndSign makes an owner's keys, assembles a UKI from the
// systemd stub and the Debian kernel, signs it and systemd-boot with the
// db key, and checks them with sbverify: db's certificate accepts both,
// another key's refuses. The UKI's sections hold exactly the parts, at
// page-aligned addresses after the stub's own sections, none overlapping.
func TestAssembleAndSign(t *testing.T) {
	testutil.RequireTool(t, "objcopy", "binutils")
	testutil.RequireTool(t, "sbsign", "sbsigntool")
	testutil.RequireTool(t, "sbverify", "sbsigntool")
	if _, err := os.Stat(stub); err != nil {
		t.Fatalf("%v (apt-get install systemd-boot-efi)", err)
	}
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	set, err := sbkeys.Generate(keys, "Test Owner", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sbkeys.Generate(keys, "Test Owner", time.Now()); err == nil {
		t.Errorf("Generate over existing keys succeeded")
	}
	if !strings.Contains(set.Enrollment(), "db.esl") {
		t.Errorf("enrollment text lacks db.esl:\n%s", set.Enrollment())
	}
	other, err := sbkeys.Generate(filepath.Join(dir, "other"), "Someone Else", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	parts := Parts{Stub: stub, Linux: kernelImage(t)}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	parts.Initrd = write("initrd", strings.Repeat("initrd bytes ", 5000))
	parts.Cmdline = write("cmdline", "root=PARTUUID=x ro plumb.slot=a plumb.verity.root=00")
	parts.OSRelease = write("os-release", "ID=plumb\nVERSION_ID=1.0.0\n")
	img := filepath.Join(dir, "uki.efi")
	if err := Assemble(t.Context(), img, parts); err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	var prevEnd uint32
	for _, s := range f.Sections {
		if s.VirtualAddress < prevEnd {
			t.Errorf("section %s at %#x overlaps the one before (ends %#x)", s.Name, s.VirtualAddress, prevEnd)
		}
		prevEnd = s.VirtualAddress + s.VirtualSize
	}
	for name, src := range map[string]string{".linux": parts.Linux, ".initrd": parts.Initrd, ".cmdline": parts.Cmdline, ".osrel": parts.OSRelease} {
		s := f.Section(name)
		if s == nil {
			t.Errorf("UKI has no %s section", name)
			continue
		}
		if s.VirtualAddress%sectionAlign != 0 {
			t.Errorf("%s at %#x: not page-aligned", name, s.VirtualAddress)
		}
		want, _ := os.ReadFile(src)
		got, _ := io.ReadAll(io.LimitReader(s.Open(), int64(s.VirtualSize)))
		if !bytes.Equal(got[:min(len(got), len(want))], want) || int(s.VirtualSize) != len(want) {
			t.Errorf("%s: %d bytes, want the %d bytes of %s", name, s.VirtualSize, len(want), src)
		}
	}
	f.Close()

	for _, in := range []string{img, bootloader} {
		signed := filepath.Join(dir, filepath.Base(in)+".signed")
		if err := Sign(t.Context(), filepath.Join(keys, sbkeys.KeyFile("db")), filepath.Join(keys, sbkeys.CertFile("db")), in, signed); err != nil {
			t.Fatal(err)
		}
		if err := Verify(t.Context(), filepath.Join(keys, sbkeys.CertFile("db")), signed); err != nil {
			t.Errorf("sbverify %s with db.crt: %v", filepath.Base(in), err)
		}
		if err := Verify(t.Context(), filepath.Join(other.Dir, sbkeys.CertFile("db")), signed); err == nil {
			t.Errorf("sbverify %s with another owner's db.crt passed", filepath.Base(in))
		}
		if err := Verify(t.Context(), filepath.Join(keys, sbkeys.CertFile("db")), in); err == nil {
			t.Errorf("sbverify of the unsigned %s passed", filepath.Base(in))
		}
	}
}

package install

import (
	"bytes"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/diskimg"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/datacrypt"
)

// writeUnprovisioned writes, at part in the disk file, the data partition
// the builder writes for data_encryption: luks2-tpm (format/datapart),
// with the builder's own code, on a zeroed partition.
func writeUnprovisioned(t *testing.T, disk string, part disklayout.Partition) {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, part.Size), part.Start); err != nil {
		t.Fatal(err)
	}
	if err := diskimg.WriteData(t.Context(), disk, part, diskimg.Spec{DataSealed: true}); err != nil {
		t.Fatal(err)
	}
}

// TestSealData runs the installer's last step against a real TPM (swtpm)
// and real cryptsetup: every reason not to seal (Secure Boot off, another
// owner's db certificate, a release that does not ask for it, one that is
// not a Secure Boot release, no TPM, an unreadable SecureBoot variable)
// leaves the disk byte-identical and says why on the console; with Secure
// Boot on and the release's certificate, the data partition becomes a
// LUKS2 volume whose recovery key, printed once, opens it with cryptsetup,
// nothing outside the partition changes, and the next boot's Unlock (same
// PCRs) unseals the key without creating anything. A partition that is
// already a volume is left alone.
func TestSealData(t *testing.T) {
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	disk := filepath.Join(t.TempDir(), "disk.img")
	pattern := bytes.Repeat([]byte{0xab}, 40<<20)
	if err := os.WriteFile(disk, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	part := disklayout.Partition{Name: disklayout.NameData, Start: 8 << 20, Size: 24 << 20}
	writeUnprovisioned(t, disk, part)
	conn, _ := testutil.Swtpm(t, t.TempDir(), false)
	tpm := transport.FromReadWriter(conn)

	db := strings.Repeat("d0", 32)
	facts := func() *release.Facts {
		return &release.Facts{Version: "1.0.0",
			UKI: map[string]release.Digest{"a": {SHA256: strings.Repeat("aa", 32), Size: 1}, "b": {SHA256: strings.Repeat("bb", 32), Size: 1}},
			Measured: &release.Measured{
				Cmdline:    map[string]string{"a": "root=PARTUUID=x plumb.slot=a plumb.data=luks2-tpm", "b": "root=PARTUUID=y plumb.slot=b plumb.data=luks2-tpm"},
				SecureBoot: &release.SecureBootState{DB: release.Cert{SHA256: db}},
			}}
	}
	on := func() (bool, error) { return true, nil }
	newRun := func(console *bytes.Buffer, sb func() (bool, error), tpm transport.TPM, installerDB string) *run {
		return &run{o: Options{Layout: &config.Installer{SecureBootDB: installerDB}, TPM: tpm, SecureBoot: sb, Console: console},
			log: slog.New(slog.DiscardHandler), start: time.Now()}
	}
	seal := func(r *run, f *release.Facts) (bool, error) {
		d, err := os.OpenFile(disk, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return r.sealData(t.Context(), d, part, f)
	}
	before := readAll(t, disk)

	notSecure := facts()
	notSecure.UKI = nil
	noData := facts()
	noData.Measured.Cmdline["a"] = "root=PARTUUID=x plumb.slot=a"
	for _, c := range []struct {
		name  string
		r     func(*bytes.Buffer) *run
		facts *release.Facts
		why   string
	}{
		{"secure boot off", func(b *bytes.Buffer) *run { return newRun(b, func() (bool, error) { return false, nil }, tpm, db) }, facts(),
			"the installer booted with Secure Boot off (its PCR 7 is not the signed chain's)"},
		{"no secure boot variable reader", func(b *bytes.Buffer) *run { return newRun(b, nil, tpm, db) }, facts(),
			"the installer booted with Secure Boot off"},
		{"unreadable variable", func(b *bytes.Buffer) *run {
			return newRun(b, func() (bool, error) { return false, errors.New("SecureBoot variable: 3 bytes, expected 5") }, tpm, db)
		}, facts(), "reading the SecureBoot variable: SecureBoot variable: 3 bytes, expected 5"},
		{"other owner", func(b *bytes.Buffer) *run { return newRun(b, on, tpm, strings.Repeat("0e", 32)) }, facts(),
			"the installer is signed with the db certificate sha256 " + strings.Repeat("0e", 32) + ", release 1.0.0 with " + db + " (PCR 7 would differ)"},
		{"unsigned installer", func(b *bytes.Buffer) *run { return newRun(b, on, tpm, "") }, facts(),
			"the installer is not signed for Secure Boot"},
		{"not a secure boot release", func(b *bytes.Buffer) *run { return newRun(b, on, tpm, db) }, notSecure,
			"release 1.0.0 is not a Secure Boot release"},
		{"release without sealed data", func(b *bytes.Buffer) *run { return newRun(b, on, tpm, db) }, noData,
			"release 1.0.0 does not ask for it (no plumb.data=luks2-tpm on slot a's command line)"},
		{"no TPM", func(b *bytes.Buffer) *run { return newRun(b, on, nil, db) }, facts(), "no TPM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var console bytes.Buffer
			sealed, err := seal(c.r(&console), c.facts)
			if err != nil || sealed {
				t.Fatalf("sealData = %v, %v; want left unprovisioned", sealed, err)
			}
			if want := "data partition left unprovisioned: " + c.why; !strings.Contains(console.String(), want) || !strings.Contains(console.String(), "plumb-init creates it") || strings.Count(console.String(), "\n") != 1 {
				t.Errorf("console = %q, want one line with %q", console.String(), want)
			}
			if !bytes.Equal(readAll(t, disk), before) {
				t.Fatal("the disk changed")
			}
		})
	}

	var console bytes.Buffer
	sealed, err := seal(newRun(&console, on, tpm, db), facts())
	if err != nil || !sealed {
		t.Fatalf("sealData = %v, %v; want sealed", sealed, err)
	}
	m := regexp.MustCompile(`data partition encrypted and sealed to this TPM \(PCR 7 ([0-9a-f]{64}), PCR 15 zero\) in [\d.]+s; .* recovery_key=([0-9a-f]{8}(?:-[0-9a-f]{8}){7})\n$`).FindStringSubmatch(console.String())
	if m == nil {
		t.Fatalf("console = %q, want the sealing line with PCR 7 and the recovery key", console.String())
	}
	after := readAll(t, disk)
	if !bytes.Equal(after[:part.Start], before[:part.Start]) || !bytes.Equal(after[part.Start+part.Size:], before[part.Start+part.Size:]) {
		t.Error("sealing wrote outside the data partition")
	}
	img := filepath.Join(t.TempDir(), "data.img")
	os.WriteFile(img, after[part.Start:part.Start+part.Size], 0o600)
	keyFile := filepath.Join(t.TempDir(), "recovery")
	os.WriteFile(keyFile, []byte(m[2]), 0o600)
	if out, err := exec.Command(cs, "open", "--test-passphrase", "--key-file", keyFile, img).CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open with the printed recovery key: %v\n%s", err, out)
	}
	// The first boot: plumb-init's Unlock unseals, creates nothing.
	u, err := datacrypt.Unlock(t.Context(), img, tpm, on)
	if err != nil {
		t.Fatalf("first boot: %v", err)
	}
	if u.RecoveryKey != "" || hex.EncodeToString(u.PCR7) != m[1] {
		t.Errorf("first boot: recovery key %q (want none), PCR 7 %x (want %s)", u.RecoveryKey, u.PCR7, m[1])
	}

	// Installed again on a disk whose partition is a volume already: left.
	console.Reset()
	if sealed, err := seal(newRun(&console, on, tpm, db), facts()); err != nil || sealed || console.Len() != 0 {
		t.Errorf("sealData on a volume = %v, %v, %q; want nothing done", sealed, err, console.String())
	}
}

// TestRegionBounds: the data volume's view refuses reads and writes
// outside the partition.
func TestRegionBounds(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(3 << 20)
	g := &region{f: f, off: 1 << 20, size: 1 << 20}
	if _, err := g.WriteAt([]byte("x"), 1<<20); err == nil {
		t.Error("a write past the partition's end was accepted")
	}
	if _, err := g.ReadAt(make([]byte, 2), (1<<20)-1); err == nil {
		t.Error("a read past the partition's end was accepted")
	}
	if _, err := g.WriteAt([]byte("x"), -1); err == nil {
		t.Error("a write before the partition was accepted")
	}
	if n, err := g.WriteAt([]byte("x"), 0); n != 1 || err != nil {
		t.Errorf("WriteAt(0) = %d, %v", n, err)
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

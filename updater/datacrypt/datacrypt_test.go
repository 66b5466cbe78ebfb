package datacrypt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/diskimg"
	"github.com/plumb-os/plumb/internal/testutil"
)

// unprovisioned writes a data partition image of size bytes as the builder
// does, with its own code: the marker, and an empty ext4 filesystem
// compressed.
func unprovisioned(t *testing.T, dir string, size int64) string { return unprovisionedTB(t, dir, size) }

func unprovisionedTB(t testing.TB, dir string, size int64) string {
	t.Helper()
	testutil.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	part := filepath.Join(dir, "part.img")
	if err := os.WriteFile(part, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(part, size); err != nil {
		t.Fatal(err)
	}
	p := disklayout.Partition{Name: disklayout.NameData, Start: 0, Size: size}
	if err := diskimg.WriteData(context.Background(), part, p, diskimg.Spec{DataSealed: true}); err != nil {
		t.Fatal(err)
	}
	return part
}

// swtpm starts a TPM with its state in dir; a second call on the same dir
// stops the first (a reboot).
func swtpm(t *testing.T, dir string) transport.TPM {
	if stop := running[dir]; stop != nil {
		stop()
	}
	conn, stop := testutil.Swtpm(t, dir, false)
	running[dir] = stop
	return transport.FromReadWriter(conn)
}

var running = map[string]func(){}

func secureBoot(on bool) SecureBootFunc { return func() (bool, error) { return on, nil } }

// TestProvisionAndUnseal runs the first boot and later boots against a real
// TPM (swtpm): with Secure Boot off nothing is created; then the
// unprovisioned partition becomes a LUKS2 volume whose
// decrypted segment is the builder's ext4 (fsck.ext4 clean) and which
// cryptsetup opens with the recovery key; the next boot (same PCRs, a
// restarted TPM) unseals the same key; a changed PCR 7 is refused with the
// reason, and with Secure Boot off the reason says so; another TPM cannot
// load the sealed object.
func TestProvisionAndUnseal(t *testing.T) {
	fsck := testutil.RequireTool(t, "fsck.ext4", "e2fsprogs")
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dir, state := t.TempDir(), t.TempDir()
	part := unprovisioned(t, dir, 24<<20)
	tpm := swtpm(t, state)

	// Secure Boot off: the volume is not created (the partition unchanged).
	before, _ := os.ReadFile(part)
	_, err := Unlock(t.Context(), part, tpm, secureBoot(false))
	if err == nil || err.Error() != "data partition sealed: not created: Secure Boot is off (the volume is created and sealed on the first boot under Secure Boot)" {
		t.Errorf("first boot with Secure Boot off: err = %v", err)
	}
	if after, _ := os.ReadFile(part); !bytes.Equal(before, after) {
		t.Error("a refused creation changed the partition")
	}

	first, err := Unlock(t.Context(), part, tpm, secureBoot(true))
	if err != nil {
		t.Fatal(err)
	}
	if first.RecoveryKey == "" || first.Offset != datapart.SegmentOffset || first.Sectors != (24<<20-datapart.SegmentOffset)/512 {
		t.Fatalf("first unlock: %+v", first)
	}
	// The segment decrypts to a clean ext4.
	enc, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := decryptSectors(first.VolumeKey, enc[datapart.SegmentOffset:], 0)
	if err != nil {
		t.Fatal(err)
	}
	fsImg := filepath.Join(dir, "decrypted.img")
	os.WriteFile(fsImg, plain, 0o600)
	if out, err := exec.Command(fsck, "-fn", fsImg).CombinedOutput(); err != nil {
		t.Errorf("fsck.ext4 of the decrypted segment: %v\n%s", err, out)
	}
	if bytes.Contains(enc[datapart.SegmentOffset:], []byte{0x53, 0xef, 0x01, 0x00}) && bytes.Contains(plain[1024:1100], []byte{0x53, 0xef}) && bytes.Equal(enc[datapart.SegmentOffset+1024:datapart.SegmentOffset+1100], plain[1024:1100]) {
		t.Error("the segment holds the plain ext4 superblock")
	}
	// The recovery key opens keyslot 0 with cryptsetup.
	keyFile := filepath.Join(dir, "recovery")
	os.WriteFile(keyFile, []byte(first.RecoveryKey), 0o600)
	if out, err := exec.Command(cs, "open", "--test-passphrase", "--key-file", keyFile, part).CombinedOutput(); err != nil {
		t.Errorf("cryptsetup open --test-passphrase with the recovery key: %v\n%s", err, out)
	}

	// The next boot: the same TPM restarted, the same PCRs.
	tpm = swtpm(t, state)
	again, err := Unlock(t.Context(), part, tpm, secureBoot(true))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.VolumeKey, first.VolumeKey) || again.RecoveryKey != "" {
		t.Errorf("second unlock: another key or a recovery key")
	}

	// A changed boot chain: PCR 7 extended.
	extend := func(pcr int) {
		t.Helper()
		_, err := tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: make([]byte, 32)}}}}.Execute(tpm)
		if err != nil {
			t.Fatal(err)
		}
	}
	extend(7)
	_, err = Unlock(t.Context(), part, tpm, secureBoot(true))
	var se *SealedError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "data partition sealed: the Secure Boot keys (PK, KEK, db, dbx) or the boot chain's signer changed (PCR 7 is ") {
		t.Errorf("PCR 7 changed: err = %v", err)
	}
	_, err = Unlock(t.Context(), part, tpm, secureBoot(false))
	if err == nil || !strings.HasPrefix(err.Error(), "data partition sealed: Secure Boot is off (PCR 7 mismatch)") {
		t.Errorf("Secure Boot off: err = %v", err)
	}
	t.Logf("refusal: %v", err)

	// PCR 7 right, PCR 15 already extended (a running system): refused.
	tpm = swtpm(t, state)
	extend(15)
	if _, err = Unlock(t.Context(), part, tpm, secureBoot(true)); err == nil || !strings.Contains(err.Error(), "PCR 15 was extended before unsealing") {
		t.Errorf("PCR 15 extended: err = %v", err)
	}

	// Another TPM.
	if _, err = Unlock(t.Context(), part, swtpm(t, t.TempDir()), secureBoot(true)); !errors.As(err, &se) {
		t.Errorf("another TPM: err = %v, want a SealedError", err)
	}
}

// TestUnlockBadInput: a partition that is neither LUKS2 nor unprovisioned,
// and a marker whose image does not match, are one error line each, and
// the partition is left as it was.
func TestUnlockBadInput(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "zero.img")
	os.WriteFile(p, make([]byte, 4<<20), 0o600)
	_, err := Unlock(t.Context(), p, nil, secureBoot(true))
	if err == nil || !strings.Contains(err.Error(), "expected a LUKS2 header or an unprovisioned data partition") {
		t.Errorf("zeros: err = %v", err)
	}
	part := unprovisioned(t, dir, 8<<20)
	f, _ := os.OpenFile(part, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, datapart.ImageOffset+10)
	f.Close()
	before, _ := os.ReadFile(part)
	_, err = Unlock(t.Context(), part, nil, secureBoot(true))
	if err == nil || !strings.Contains(err.Error(), "expected") || !strings.Contains(err.Error(), "the marker's") {
		t.Errorf("corrupt image: err = %v", err)
	}
	after, _ := os.ReadFile(part)
	if !bytes.Equal(before, after) {
		t.Error("a refused provisioning changed the partition")
	}
}

// BenchmarkUnlock: one boot's unseal (storage key, load, policy session,
// unseal) and key check against swtpm, on the host.
func BenchmarkUnlock(b *testing.B) {
	dir, state := b.TempDir(), b.TempDir()
	part := unprovisionedTB(b, dir, 8<<20)
	conn, _ := testutil.Swtpm(b, state, false)
	tpm := transport.FromReadWriter(conn)
	if _, err := Unlock(b.Context(), part, tpm, secureBoot(true)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Unlock(b.Context(), part, tpm, secureBoot(true)); err != nil {
			b.Fatal(err)
		}
	}
}

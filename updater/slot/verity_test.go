package slot

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
)

// TestFormatVerity writes a slot's tree from release facts: the right root
// hash passes (and verity.Check agrees), a different one is ErrVerity, a
// slot without room for the tree is refused, facts without verity need
// nothing.
func TestFormatVerity(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 300<<10+5)
	rand.Read(img)
	sum := sha256.Sum256(img)
	salt, err := verity.SaltFor(hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	const capacity = 1 << 20
	newSlot := func(name string) *os.File {
		junk := make([]byte, capacity)
		rand.Read(junk) // an older release's leftovers
		copy(junk, img)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, junk, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	want, err := verity.Format(newSlot("reference"), int64(len(img)), salt)
	if err != nil {
		t.Fatal(err)
	}
	facts := &release.Facts{Kind: "full", Hardware: "test", Version: "1.0.0", Channel: "stable",
		Rootfs: release.Digest{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(img))}, Verity: want.Facts()}
	d := &Device{}

	f := newSlot("good")
	if err := d.FormatVerity(f, capacity, int64(len(img)), facts); err != nil {
		t.Fatalf("FormatVerity: %v", err)
	}
	if err := verity.Check(f, want); err != nil {
		t.Errorf("Check after FormatVerity: %v", err)
	}

	other := *facts
	bad := *want.Facts()
	bad.RootHash = strings.Repeat("ab", 32)
	other.Verity = &bad
	if err := d.FormatVerity(newSlot("bad"), capacity, int64(len(img)), &other); !errors.Is(err, ErrVerity) {
		t.Errorf("FormatVerity with another root hash = %v, want ErrVerity", err)
	}
	if err := d.FormatVerity(newSlot("small"), int64(len(img))+4096, int64(len(img)), facts); err == nil || !strings.Contains(err.Error(), "the slot holds") {
		t.Errorf("FormatVerity into a slot too small = %v", err)
	}
	plain := *facts
	plain.Verity = nil
	if err := d.FormatVerity(newSlot("plain"), capacity, int64(len(img)), &plain); err != nil {
		t.Errorf("FormatVerity without verity facts = %v, want nil", err)
	}
}

// TestInstallUKI installs a Secure Boot release's UKI for the inactive
// slot: the file on the ESP, a trial entry that starts it (and that
// Entries attributes to the slot); a UKI whose bytes are not the facts'
// leaves neither.
func TestInstallUKI(t *testing.T) {
	f := newFixture(t, "a")
	f.stage(t)
	uki := randomBytes(t, 200<<10+3)
	facts := *f.facts
	facts.UKI = map[string]release.Digest{"a": digest([]byte("other")), "b": digest(uki)}

	bad := append([]byte{}, uki...)
	bad[100] ^= 1
	if err := f.dev.InstallUKI(t.Context(), bytes.NewReader(bad), &facts, uuidB); !errors.Is(err, ErrDigest) {
		t.Fatalf("InstallUKI of a changed UKI = %v, want ErrDigest", err)
	}
	if _, err := os.Stat(filepath.Join(f.esp, "plumb/b/uki.efi")); !os.IsNotExist(err) {
		t.Errorf("a changed UKI reached the ESP (stat: %v)", err)
	}
	if got := f.entryNames(t); len(got) != 1 {
		t.Errorf("entries after a refused UKI = %q, want only the running slot's", got)
	}

	if err := f.dev.InstallUKI(t.Context(), bytes.NewReader(uki), &facts, uuidB); err != nil {
		t.Fatalf("InstallUKI: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(f.esp, "plumb/b/uki.efi")); err != nil || !bytes.Equal(got, uki) {
		t.Errorf("ESP plumb/b/uki.efi: %d bytes, %v", len(got), err)
	}
	content, _ := os.ReadFile(filepath.Join(f.esp, "loader/entries/plumb-2.0.0+3.conf"))
	if want := "title Plumb 2.0.0 (slot b)\nsort-key plumb\nversion 2.0.0\nefi /plumb/b/uki.efi\n"; string(content) != want {
		t.Errorf("trial entry = %q, want %q", content, want)
	}
	entries, err := f.dev.Entries()
	if err != nil || len(entries) != 2 || entries[1].Slot != "b" || entries[1].TriesLeft != 3 {
		t.Errorf("Entries() = %+v, %v; want the trial of slot b", entries, err)
	}
}

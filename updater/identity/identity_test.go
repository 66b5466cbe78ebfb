package identity

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/plumb-os/plumb/internal/testutil"
)

// swtpm starts a real TPM 2.0 simulator (swtpm) with its state in dir and
// returns a connection and a function that stops it (also run at cleanup).
func swtpm(t *testing.T, dir string) (transport.TPM, func()) {
	conn, stop := testutil.Swtpm(t, dir, false)
	return transport.FromReadWriter(conn), stop
}

var idRE = regexp.MustCompile(`^[a-z2-7]{16}$`)

// TestTPMIdentityStable: the same TPM (its state kept across a restart)
// gives the same identity; another TPM another one.
func TestTPMIdentityStable(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	tpm, stop := swtpm(t, dirA)
	first, err := FromTPM(tpm)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if !idRE.MatchString(first.ID) || first.Source != SourceTPM {
		t.Fatalf("identity = %+v, want a 16-character base32 id from the TPM", first)
	}
	tpm, _ = swtpm(t, dirA) // a second swtpm on the same state: a reboot
	again, err := FromTPM(tpm)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || string(again.PublicKey) != string(first.PublicKey) {
		t.Errorf("same TPM after restart: id %s, want %s", again.ID, first.ID)
	}
	tpm, _ = swtpm(t, dirB)
	other, err := FromTPM(tpm)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Errorf("two TPMs gave the same id %s", first.ID)
	}
	if IDOf(first.PublicKey) != first.ID {
		t.Errorf("IDOf(public key) = %s, want %s", IDOf(first.PublicKey), first.ID)
	}
	t.Logf("TPM identities: %s, %s", first.ID, other.ID)
}

func TestFileIdentity(t *testing.T) {
	p := filepath.Join(t.TempDir(), "identity.key")
	a, err := Load([]string{filepath.Join(t.TempDir(), "no-tpm")}, p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.Source != SourceFile || !idRE.MatchString(a.ID) {
		t.Errorf("file identity: first %+v, then %+v; want the same id from the file", a, b)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", fi, err)
	}
	os.WriteFile(p, []byte("not a key\n"), 0o600)
	if _, err := Load(nil, p); err == nil {
		t.Error("Load of a damaged key file: no error")
	}
	if _, err := Load(nil, ""); err == nil {
		t.Error("Load without TPM and key file: no error")
	}
}

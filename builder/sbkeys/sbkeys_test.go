package sbkeys

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Generate(dir, "Acme Fleet", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range Roles {
		fi, err := os.Stat(filepath.Join(dir, KeyFile(role)))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", KeyFile(role), err, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(filepath.Join(dir, CertFile(role)))
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", CertFile(role))
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || cert.Subject.CommonName != "Acme Fleet Secure Boot "+role {
			t.Errorf("%s: %v, subject %q", CertFile(role), err, cert.Subject.CommonName)
		}
		esl, _ := os.ReadFile(filepath.Join(dir, ESLFile(role)))
		if len(esl) < 28+16 || [16]byte(esl[:16]) != certX509GUID || int(binary.LittleEndian.Uint32(esl[16:])) != len(esl) ||
			int(binary.LittleEndian.Uint32(esl[24:])) != 16+len(blk.Bytes) || [16]byte(esl[28:44]) != s.Owner || string(esl[44:]) != string(blk.Bytes) {
			t.Errorf("%s is not one EFI_SIGNATURE_LIST of the X.509 certificate owned by %s", ESLFile(role), GUIDString(s.Owner))
		}
	}
	if got := GUIDString(ParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")); got != "a5c059a1-94e4-4aa7-87b5-ab155c2bf072" {
		t.Errorf("GUID round trip = %s", got)
	}
	if _, err := Generate(dir, "Acme Fleet", time.Now()); err == nil {
		t.Errorf("Generate into an existing directory succeeded")
	}
	if _, err := Generate(filepath.Join(t.TempDir(), "k"), "", time.Now()); err == nil {
		t.Errorf("Generate without an owner succeeded")
	}
}

package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"path/filepath"
	"testing"
)

// TestSigners: the TPM key and the file key sign what their public key
// verifies, and the client certificate is self-signed by that key.
func TestSigners(t *testing.T) {
	tpm, _ := swtpm(t, t.TempDir())
	fromTPM, err := FromTPM(tpm)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []*Identity{fromTPM, fromFile} {
		t.Run(id.Source, func(t *testing.T) {
			sum := sha256.Sum256([]byte("hello"))
			sig, err := id.Signer().Sign(rand.Reader, sum[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			pub := id.Signer().Public().(*ecdsa.PublicKey)
			if !ecdsa.VerifyASN1(pub, sum[:], sig) {
				t.Fatal("signature does not verify with the identity's public key")
			}
			sum[0] ^= 1
			if ecdsa.VerifyASN1(pub, sum[:], sig) {
				t.Fatal("signature verifies for another digest")
			}
			c, err := id.Certificate()
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("certificate is not self-signed by the identity key: %v", err)
			}
			if IDOf(cert.RawSubjectPublicKeyInfo) != id.ID || cert.Subject.CommonName != id.ID {
				t.Errorf("certificate for %s (CN %s), want %s", IDOf(cert.RawSubjectPublicKeyInfo), cert.Subject.CommonName, id.ID)
			}
		})
	}
}

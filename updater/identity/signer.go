package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Signer returns a signer for the identity key; nil for an Identity not
// made by Load, FromTPM or FromFile.
func (id *Identity) Signer() crypto.Signer { return id.signer }

// tpmSigner signs SHA-256 digests with the TPM-resident identity key.
type tpmSigner struct {
	pub  *ecdsa.PublicKey
	open func() (transport.TPM, func(), error)
	mu   sync.Mutex
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.pub }

// Sign makes an ASN.1 ECDSA signature over digest. The key's scheme is
// fixed to ECDSA with SHA-256, so other hashes are refused.
func (s *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return nil, fmt.Errorf("TPM identity key: expected a SHA-256 digest, got %v", opts.HashFunc())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tpm, done, err := s.open()
	if err != nil {
		return nil, fmt.Errorf("TPM identity key: %w", err)
	}
	defer done()
	key, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(keyTemplate())}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM identity key: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: key.ObjectHandle}.Execute(tpm)
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.NamedHandle{Handle: key.ObjectHandle, Name: key.Name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM identity key: signing: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("TPM identity key: signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

// Certificate returns a self-signed certificate for the identity key, the
// device's client certificate for mutual TLS with the fleet service. The
// server trusts no CA for it: it checks that the certificate's key is the
// one the device id is the hash of (and that the handshake was signed by
// it). Its validity spans 2000-9999, so a device whose clock is wrong can
// still present it.
func (id *Identity) Certificate() (tls.Certificate, error) {
	if id.signer == nil {
		return tls.Certificate{}, errors.New("device identity: no signing key")
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: id.ID},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.signer.Public(), id.signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.signer, SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}, nil
}

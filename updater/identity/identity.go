// Package identity owns the device's identity: an ECC P-256 key and a short
// device id derived from its public key.
//
// Load takes the key from the TPM when there is one: the primary key that
// the TPM derives from its owner hierarchy's seed and Plumb's fixed key
// template, so the same TPM gives the same key at every boot and in the
// installer, without writing to the TPM's NV memory, and the private key
// never leaves the TPM. Without a TPM it uses (or makes, on first boot) a
// key file on the data partition. The id is the same function of the public
// key either way.
package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Sources of a key.
const (
	SourceTPM  = "tpm"
	SourceFile = "file"
	// SourceMemory is a key held only in memory (FromKey): simulated
	// devices in benchmarks and tests.
	SourceMemory = "memory"
)

// Identity is the device's identity.
type Identity struct {
	// ID is 16 lower-case base32 characters: the first 10 bytes of the
	// sha256 of the public key's PKIX (SubjectPublicKeyInfo) DER.
	ID string `json:"id"`
	// PublicKey is the PKIX DER of the key, base64 in JSON.
	PublicKey []byte `json:"public_key"`
	// Source is "tpm", "file" or "memory".
	Source string `json:"source"`

	signer crypto.Signer // signs with the key (signer.go)
}

// IDOf derives the device id from a public key's PKIX DER.
func IDOf(pkix []byte) string { return deviceapi.IDOf(pkix) }

func fromPublic(pub *ecdsa.PublicKey, source string) (*Identity, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &Identity{ID: IDOf(der), PublicKey: der, Source: source}, nil
}

// keyUnique makes Plumb's template differ from every other primary key
// template on the TPM (an ECC template's unique field seeds the key).
var keyUnique = sha256.Sum256([]byte("plumb device identity v1"))

// keyTemplate is an unrestricted ECDSA P-256 signing key, fixed to the TPM.
func keyTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: keyUnique[:]},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		}),
	}
}

// FromTPM derives the identity key in the TPM and returns its identity.
func FromTPM(tpm transport.TPM) (*Identity, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(keyTemplate()),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM: creating the identity key: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("TPM: identity key: %w", err)
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("TPM: identity key: %w", err)
	}
	if len(pt.X.Buffer) > 32 || len(pt.Y.Buffer) > 32 {
		return nil, fmt.Errorf("TPM: identity key: expected P-256 coordinates of at most 32 bytes, got %d and %d", len(pt.X.Buffer), len(pt.Y.Buffer))
	}
	// Uncompressed point: 0x04, X and Y, each 32 bytes big-endian.
	raw := make([]byte, 65)
	raw[0] = 4
	copy(raw[1+32-len(pt.X.Buffer):33], pt.X.Buffer)
	copy(raw[33+32-len(pt.Y.Buffer):], pt.Y.Buffer)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("TPM: identity key: %w", err)
	}
	id, err := fromPublic(key, SourceTPM)
	if err != nil {
		return nil, err
	}
	id.signer = &tpmSigner{pub: key, open: func() (transport.TPM, func(), error) { return tpm, func() {}, nil }}
	return id, nil
}

// FromFile reads the PEM (PKCS #8) key at path, making it first when the
// file does not exist (atomically: write, fsync, rename).
func FromFile(path string) (*Identity, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("identity key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("identity key %s: expected a PEM \"PRIVATE KEY\" block, got none", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("identity key %s: expected an ECDSA P-256 key, got %T", path, k)
	}
	id, err := fromPublic(&ek.PublicKey, SourceFile)
	if err != nil {
		return nil, err
	}
	id.signer = ek
	return id, nil
}

// FromKey returns the identity of a P-256 key held in memory (no TPM, no
// file): what a simulated device (bench/sim) uses.
func FromKey(k *ecdsa.PrivateKey) (*Identity, error) {
	if k == nil || k.Curve != elliptic.P256() {
		return nil, errors.New("identity key: expected an ECDSA P-256 key")
	}
	id, err := fromPublic(&k.PublicKey, SourceMemory)
	if err != nil {
		return nil, err
	}
	id.signer = k
	return id, nil
}

// TPMDevices are the TPM device nodes Load tries, resource manager first.
var TPMDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// Load returns the identity from the first TPM device of devices that
// opens, else from the key file at keyFile ("" when there is no data
// partition yet: then only a TPM will do).
func Load(devices []string, keyFile string) (*Identity, error) {
	var tpmErr error
	for _, dev := range devices {
		if _, err := os.Stat(dev); err != nil {
			continue
		}
		t, err := openTPM(dev)
		if err != nil {
			tpmErr = err
			continue
		}
		id, err := FromTPM(transport.FromReadWriter(t))
		t.Close()
		if err == nil {
			// Each signature opens the TPM again: the agent signs rarely
			// (a TLS handshake with the fleet service) and must not hold
			// the device that attestation opens too.
			id.signer = &tpmSigner{pub: id.signer.Public().(*ecdsa.PublicKey), open: func() (transport.TPM, func(), error) {
				rw, err := openTPM(dev)
				if err != nil {
					return nil, nil, err
				}
				return transport.FromReadWriter(rw), func() { rw.Close() }, nil
			}}
			return id, nil
		}
		tpmErr = err
	}
	if keyFile == "" {
		if tpmErr == nil {
			tpmErr = errors.New("no TPM")
		}
		return nil, fmt.Errorf("device identity: %w and no key file", tpmErr)
	}
	return FromFile(keyFile)
}

// openTPM opens a TPM character device for raw commands.
func openTPM(dev string) (io.ReadWriteCloser, error) {
	return os.OpenFile(dev, os.O_RDWR, 0)
}

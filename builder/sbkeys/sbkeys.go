// Package sbkeys makes a device owner's UEFI Secure Boot key set: the
// Platform Key (PK), the Key Exchange Key (KEK) and the signature database
// key (db) that signs Plumb's boot chain, each an RSA 2048 key with a
// self-signed X.509 certificate, and the EFI signature lists firmware
// enrolls (PK.esl, KEK.esl, db.esl).
//
// Generate writes them into a new directory and never overwrites: an
// owner's PK replaced by mistake would lock every enrolled device out of
// key updates.
package sbkeys

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Roles in enrollment order (db first, PK last: setting PK leaves setup mode).
var Roles = []string{"db", "KEK", "PK"}

// Files of one role in the key directory.
func KeyFile(role string) string  { return role + ".key" } // PEM PKCS#8 private key (mode 0600)
func CertFile(role string) string { return role + ".crt" } // PEM certificate
func ESLFile(role string) string  { return role + ".esl" } // EFI_SIGNATURE_LIST with the certificate
func DERFile(role string) string  { return role + ".cer" } // DER certificate (firmware setup menus take it)

// GUIDFile holds the owner GUID written into the signature lists.
const GUIDFile = "owner.guid"

// validity of the certificates. Firmware does not check expiry; a long
// life keeps tools that do from failing.
const validity = 20 * 365 * 24 * time.Hour

// Set is a generated key set.
type Set struct {
	Dir   string
	Owner [16]byte // EFI GUID, in its on-disk byte order
	// Fingerprints are the sha256 of each role's certificate (DER).
	Fingerprints map[string]string
}

// ErrExists: the directory already holds keys.
var ErrExists = errors.New("key directory already exists")

// Generate makes a key set for owner (a name that goes into the
// certificates' subjects) in dir, which must not exist.
func Generate(dir, owner string, now time.Time) (*Set, error) {
	if owner == "" {
		return nil, fmt.Errorf("secure boot keys: owner: expected a name for the certificates, got nothing")
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("secure boot keys: %s: %w (keys are never overwritten)", dir, ErrExists)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), ".sbkeys-")
	if err != nil {
		return nil, fmt.Errorf("secure boot keys: %w", err)
	}
	defer os.RemoveAll(tmp)
	s := &Set{Dir: dir, Fingerprints: map[string]string{}}
	if _, err := rand.Read(s.Owner[:]); err != nil {
		return nil, err
	}
	s.Owner[7] = s.Owner[7]&0x0f | 0x40 // version 4 (byte 7 is the high byte of field 3, little-endian)
	s.Owner[8] = s.Owner[8]&0x3f | 0x80
	for _, role := range Roles {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: owner + " Secure Boot " + role, Organization: []string{owner}},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(validity),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
		}
		if role == "db" {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, err
		}
		pk8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(der)
		s.Fingerprints[role] = fmt.Sprintf("%x", sum)
		for _, f := range []struct {
			name string
			data []byte
			mode os.FileMode
		}{
			{KeyFile(role), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600},
			{CertFile(role), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
			{DERFile(role), der, 0o644},
			{ESLFile(role), SignatureList(s.Owner, der), 0o644},
		} {
			if err := os.WriteFile(filepath.Join(tmp, f.name), f.data, f.mode); err != nil {
				return nil, err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, GUIDFile), []byte(GUIDString(s.Owner)+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("secure boot keys: %w", err)
	}
	return s, nil
}

// certX509GUID is EFI_CERT_X509_GUID (a5c059a1-94e4-4aa7-87b5-ab155c2bf072)
// in on-disk byte order.
var certX509GUID = ParseGUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")

// SignatureList is an EFI_SIGNATURE_LIST holding one X.509 certificate
// (DER) owned by owner.
func SignatureList(owner [16]byte, der []byte) []byte {
	var b bytes.Buffer
	b.Write(certX509GUID[:])
	sigSize := 16 + len(der)
	binary.Write(&b, binary.LittleEndian, uint32(16+4+4+4+sigSize)) // SignatureListSize
	binary.Write(&b, binary.LittleEndian, uint32(0))                // SignatureHeaderSize
	binary.Write(&b, binary.LittleEndian, uint32(sigSize))          // SignatureSize
	b.Write(owner[:])
	b.Write(der)
	return b.Bytes()
}

// ParseGUID parses the text form of a GUID into its on-disk byte order
// (the first three fields little-endian). It panics on malformed input:
// use it for constants.
func ParseGUID(s string) [16]byte {
	var g [16]byte
	var a uint32
	var b, c uint16
	var d [8]byte
	n, err := fmt.Sscanf(s, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", &a, &b, &c, &d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7])
	if err != nil || n != 11 {
		panic("sbkeys: bad GUID " + s)
	}
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	copy(g[8:], d[:])
	return g
}

// GUIDString is the text form of a GUID in on-disk byte order.
func GUIDString(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}

// Enrollment explains how to enroll the set in a device's firmware.
func (s *Set) Enrollment() string {
	return fmt.Sprintf(`Secure Boot keys for owner GUID %s in %s
  db  %s  signs systemd-boot and each release's UKIs (recipe boot.secure_boot: key db.key, cert db.crt; pk PK.crt, kek KEK.crt let attestation check them)
  KEK %s  signs updates of db and dbx
  PK  %s  signs updates of KEK and PK; keep PK.key and KEK.key offline

Enroll on each device, once, with its firmware in Setup Mode (firmware setup: "Reset to Setup Mode" or "Clear Secure Boot keys"):
  1. db  from db.esl  (or db.cer in a firmware menu that takes certificates)
  2. KEK from KEK.esl (KEK.cer)
  3. PK  from PK.esl  (PK.cer): this leaves Setup Mode and turns Secure Boot on
  From Linux in Setup Mode, efitools does the same: efi-updatevar -e -f db.esl db; efi-updatevar -e -f KEK.esl KEK; efi-updatevar -f PK.esl PK
  Keep Microsoft's UEFI CA in db only if the device needs option ROMs signed by it (GPUs, NICs): add its .esl to db before PK.
Then install a release built with boot.secure_boot: firmware runs only boot chains signed by db.key.
`, GUIDString(s.Owner), s.Dir, s.Fingerprints["db"], s.Fingerprints["KEK"], s.Fingerprints["PK"])
}

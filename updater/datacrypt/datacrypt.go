// Package datacrypt owns the device's encrypted data partition: a LUKS2
// volume (luks2.go) whose volume key is sealed in the TPM under a PCR
// policy (seal.go), and its creation from the unprovisioned partition the
// builder wrote (format/datapart).
//
// plumb-init calls Unlock once per boot, before it measures the root into
// PCR 15, and maps the returned key with the device mapper's crypt target;
// Unlock creates the volume when the partition is still unprovisioned.
// `plumbd install`, booted under Secure Boot with the owner's keys, calls
// Provision on the partition it just wrote, so that the first boot only
// unlocks. Nothing here runs concurrently.
package datacrypt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/internal/ctxio"
)

// token is Plumb's LUKS2 token: the sealed volume key and what it was
// sealed to.
type token struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	PCRs     []int    `json:"tpm2-pcrs"`
	Bank     string   `json:"tpm2-pcr-bank"`
	Public   []byte   `json:"tpm2-blob-public"`
	Private  []byte   `json:"tpm2-blob-private"`
	Policy   string   `json:"tpm2-policy-hash"`
	// PCR7 is PCR 7 when the key was sealed (hex): the reason for a
	// refusal names it.
	PCR7 string `json:"plumb-pcr7"`
}

// SealedError says the TPM did not release the volume key, and why.
type SealedError struct{ Reason string }

func (e *SealedError) Error() string { return "data partition sealed: " + e.Reason }

// Unlocked is an opened data partition.
type Unlocked struct {
	// VolumeKey, Offset (bytes) and Sectors (512-byte, from Offset to the
	// partition's end) are the crypt target's table.
	VolumeKey []byte
	Offset    int64
	Sectors   uint64
	Cipher    string
	// RecoveryKey is set only on the boot that created the volume: shown
	// once, never stored on the device.
	RecoveryKey string
	// PCR7 is PCR 7 (sha256 bank) when the key was sealed or unsealed.
	PCR7 []byte
}

// Volume is a data partition being provisioned: the partition's device,
// or its region of a whole disk (an io.SectionReader-like view that also
// writes and syncs).
type Volume interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// SecureBootFunc reports the firmware's SecureBoot variable.
type SecureBootFunc func() (bool, error)

// Unlock opens the data partition at dev: a LUKS2 volume's sealed key is
// unsealed; an unprovisioned partition (datapart.Magic) is first encrypted
// with a new volume key sealed in tpm, only under Secure Boot. An unseal
// the TPM refuses, or a creation refused, is a *SealedError saying why.
func Unlock(ctx context.Context, dev string, tpm transport.TPM, secureBoot SecureBootFunc) (*Unlocked, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("sizing %s: %w", dev, err)
	}
	block := make([]byte, datapart.MarkerSize)
	if _, err := f.ReadAt(block, 0); err != nil {
		return nil, fmt.Errorf("reading %s: %w", dev, err)
	}
	switch {
	case datapart.IsMarker(block):
		// Seal only to a Secure Boot chain: a first boot with it off (an
		// installed device before its keys are enrolled) would seal to a
		// PCR 7 that no signed boot reproduces.
		on, err := secureBoot()
		if err != nil {
			return nil, &SealedError{Reason: "not created: reading the SecureBoot variable: " + err.Error()}
		}
		if !on {
			return nil, &SealedError{Reason: "not created: Secure Boot is off (the volume is created and sealed on the first boot under Secure Boot)"}
		}
		return Provision(ctx, f, size, tpm)
	case IsLUKS2(block):
		return unlock(f, size, tpm, secureBoot)
	}
	return nil, fmt.Errorf("%s: expected a LUKS2 header or an unprovisioned data partition (%q), found neither", dev, strings.TrimSpace(datapart.Magic))
}

func unlock(f *os.File, size int64, tpm transport.TPM, secureBoot SecureBootFunc) (*Unlocked, error) {
	h, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	if h.Token == nil {
		return nil, &SealedError{Reason: "the LUKS2 header has no " + TokenType + " token (open it with the recovery key)"}
	}
	var tok token
	if err := json.Unmarshal(h.Token, &tok); err != nil {
		return nil, fmt.Errorf("LUKS2 token %s: %w", TokenType, err)
	}
	vk, err := unseal(tpm, &sealed{Public: tok.Public, Private: tok.Private})
	if errors.Is(err, errRefused) {
		return nil, &SealedError{Reason: mismatch(tpm, &tok, secureBoot) + " (" + err.Error() + ")"}
	}
	if err != nil {
		return nil, &SealedError{Reason: err.Error()}
	}
	if err := h.CheckKey(vk); err != nil {
		return nil, &SealedError{Reason: err.Error()}
	}
	pcr7, _ := readPCR(tpm, 7) // for the log only: the unseal proved it
	return &Unlocked{VolumeKey: vk, Offset: h.Offset, Sectors: uint64(size-h.Offset) / sectorSize, Cipher: h.Encryption, PCR7: pcr7}, nil
}

// Provision encrypts the unprovisioned partition f (size bytes) with a
// new volume key sealed in tpm to PCR 7 and PCR 15 as they are now: the
// compressed empty filesystem goes, encrypted, into the data segment; the
// LUKS2 headers are written last (over the marker), so a provisioning cut
// short leaves the marker and starts again on the next try. The caller
// checks that PCR 7 is what the device's signed boot chain will give
// (Unlock: the SecureBoot variable is on). A partition that is not
// unprovisioned is an error, and is left unchanged.
func Provision(ctx context.Context, f Volume, size int64, tpm transport.TPM) (*Unlocked, error) {
	block := make([]byte, datapart.MarkerSize)
	if _, err := f.ReadAt(block, 0); err != nil {
		return nil, err
	}
	if !datapart.IsMarker(block) {
		return nil, fmt.Errorf("expected an unprovisioned data partition (%q), found none", strings.TrimSpace(datapart.Magic))
	}
	m, err := datapart.DecodeMarker(block, size)
	if err != nil {
		return nil, err
	}
	comp := make([]byte, m.Compressed)
	if _, err := f.ReadAt(comp, datapart.ImageOffset); err != nil {
		return nil, fmt.Errorf("reading the data filesystem image: %w", err)
	}
	if sum := sha256.Sum256(comp); hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, fmt.Errorf("data filesystem image: sha256 %x, expected %s (the marker's)", sum, m.SHA256)
	}
	vk := make([]byte, keySize)
	if _, err := rand.Read(vk); err != nil {
		return nil, err
	}
	s, err := seal(tpm, vk)
	if err != nil {
		return nil, fmt.Errorf("sealing the data volume key: %w", err)
	}
	pcr7, err := readPCR(tpm, 7)
	if err != nil {
		return nil, err
	}

	zr, err := gzip.NewReader(bytes.NewReader(comp))
	if err != nil {
		return nil, fmt.Errorf("data filesystem image: %w", err)
	}
	buf := make([]byte, 1<<20)
	var off int64
	r := ctxio.Reader(ctx, zr)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if n%sectorSize != 0 || off+int64(n) > m.Size {
				return nil, fmt.Errorf("data filesystem image: longer than %d bytes or not whole sectors", m.Size)
			}
			enc, err := encryptSectors(vk, buf[:n], uint64(off/sectorSize))
			if err != nil {
				return nil, err
			}
			if _, err := f.WriteAt(enc, datapart.SegmentOffset+off); err != nil {
				return nil, fmt.Errorf("writing the encrypted filesystem: %w", err)
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data filesystem image: %w", err)
		}
	}
	if off != m.Size {
		return nil, fmt.Errorf("data filesystem image: %d bytes, expected %d", off, m.Size)
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	rec := NewRecoveryKey()
	tok := token{Type: TokenType, Keyslots: []string{}, PCRs: sealPCRs, Bank: "sha256", Public: s.Public, Private: s.Private, Policy: hex.EncodeToString(s.Policy), PCR7: hex.EncodeToString(pcr7)}
	if err := format(f, vk, rec, tok); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return &Unlocked{VolumeKey: vk, Offset: datapart.SegmentOffset, Sectors: uint64(size-datapart.SegmentOffset) / sectorSize, Cipher: cipher, RecoveryKey: rec, PCR7: pcr7}, nil
}

// NewRecoveryKey returns 256 random bits as 8 dash-separated groups of 8
// hex digits: the passphrase of keyslot 0.
func NewRecoveryKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	h := hex.EncodeToString(b)
	var g []string
	for i := 0; i < len(h); i += 8 {
		g = append(g, h[i:i+8])
	}
	return strings.Join(g, "-")
}

// SecureBootVar is the firmware's SecureBoot variable in efivarfs (EFI
// global variable GUID).
const SecureBootVar = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// SecureBootFromEFIVars reads SecureBoot from efivarfs mounted at dir;
// firmware without the variable has Secure Boot off.
func SecureBootFromEFIVars(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, SecureBootVar))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(b) != 5 { // 4 bytes of attributes, then the value
		return false, fmt.Errorf("SecureBoot variable: %d bytes, expected 5", len(b))
	}
	return b[4] == 1, nil
}

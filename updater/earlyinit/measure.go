package earlyinit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/ctxio"
)

const (
	// releaseFile is where the image keeps its release facts
	// (release.ImageInfoPath).
	releaseFile = "/" + release.ImageInfoPath
	// squashfsAlign is what the builder pads its images to (and so the
	// size of the published image): builder/squashfs.
	squashfsAlign = 4096
)

// SquashfsImageSize returns the size of the squashfs image at the start of
// r: the superblock's bytes_used rounded up to 4 KiB, which is the size of
// the image the builder wrote and the repository published.
func SquashfsImageSize(r io.ReaderAt, limit int64) (int64, error) {
	var sb [96]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil {
		return 0, fmt.Errorf("reading squashfs superblock: %w", err)
	}
	if string(sb[:4]) != "hsqs" {
		return 0, fmt.Errorf("squashfs superblock: expected magic \"hsqs\", got %q", sb[:4])
	}
	used := int64(binary.LittleEndian.Uint64(sb[40:]))
	size := (used + squashfsAlign - 1) / squashfsAlign * squashfsAlign
	if used <= int64(len(sb)) || size > limit {
		return 0, fmt.Errorf("squashfs superblock: bytes_used %d: expected 96..%d", used, limit)
	}
	return size, nil
}

// HashImage returns the sha256 (hex) and size of the squashfs image on the
// block device (or file) at path, streaming it.
func HashImage(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	limit, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", 0, fmt.Errorf("sizing %s: %w", path, err)
	}
	size, err := SquashfsImageSize(f, limit)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, io.NewSectionReader(f, 0, size)))
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", path, err)
	}
	if n != size {
		return "", 0, fmt.Errorf("hashing %s: expected %d bytes, read %d", path, size, n)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// tpmDevices are tried in order; the resource manager first.
var tpmDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// errNoTPM says the machine has no TPM device.
var errNoTPM = errors.New("no TPM (/dev/tpmrm0, /dev/tpm0)")

// openTPM opens the first TPM character device that exists.
func openTPM(devs []string) (*os.File, error) {
	for _, p := range devs {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening %s: %w", p, err)
		}
	}
	return nil, errNoTPM
}

// TPM 2.0 constants for TPM2_PCR_Extend (TPM 2.0 Part 2 and 3).
const (
	tpmSTSessions   = 0x8002
	tpmCCPCRExtend  = 0x00000182
	tpmRSPW         = 0x40000009
	tpmAlgSHA256    = 0x000b
	tpmMaxResponse  = 4096
	tpmResponseHead = 10
)

// extendPCR sends TPM2_PCR_Extend(pcr, sha256 digest) with an empty
// password session to a TPM character device and checks its response code.
// It is the one TPM command plumb-init needs, so it is encoded here rather
// than pulling a TPM library into the initramfs.
func extendPCR(rw io.ReadWriter, pcr int, digest []byte) error {
	if len(digest) != sha256.Size {
		return fmt.Errorf("extending PCR %d: expected a %d-byte digest, got %d", pcr, sha256.Size, len(digest))
	}
	var b bytes.Buffer
	be := func(v any) { binary.Write(&b, binary.BigEndian, v) }
	be(uint16(tpmSTSessions))
	be(uint32(0)) // size, set below
	be(uint32(tpmCCPCRExtend))
	be(uint32(pcr)) // TPMI_DH_PCR
	// Authorization area: one password session with an empty password.
	be(uint32(9))
	be(uint32(tpmRSPW))
	be(uint16(0)) // nonce
	be(uint8(0))  // session attributes
	be(uint16(0)) // hmac (the password)
	// TPML_DIGEST_VALUES with one sha256 digest.
	be(uint32(1))
	be(uint16(tpmAlgSHA256))
	b.Write(digest)
	cmd := b.Bytes()
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
	if _, err := rw.Write(cmd); err != nil {
		return fmt.Errorf("extending PCR %d: sending the command: %w", pcr, err)
	}
	resp := make([]byte, tpmMaxResponse)
	n, err := rw.Read(resp)
	if err != nil {
		return fmt.Errorf("extending PCR %d: reading the response: %w", pcr, err)
	}
	if n < tpmResponseHead {
		return fmt.Errorf("extending PCR %d: expected a response of at least %d bytes, got %d", pcr, tpmResponseHead, n)
	}
	if rc := binary.BigEndian.Uint32(resp[6:]); rc != 0 {
		return fmt.Errorf("extending PCR %d: TPM response code %#x", pcr, rc)
	}
	return nil
}

// measurer extends PCR 15 and remembers what it extended.
type measurer struct {
	tpm io.ReadWriteCloser // nil: no TPM, nothing is measured
	log []bootrecord.Measurement
}

func (m *measurer) extend(ms bootrecord.Measurement) error {
	d, err := hex.DecodeString(ms.SHA256)
	if err != nil {
		return fmt.Errorf("measurement %s: %w", ms.Type, err)
	}
	if err := extendPCR(m.tpm, ms.PCR, d); err != nil {
		return fmt.Errorf("measuring %s: %w", ms.Type, err)
	}
	m.log = append(m.log, ms)
	return nil
}

// releaseVersion reads the version from a root's /etc/plumb/release.json.
func releaseVersion(root string) (string, error) {
	b, err := os.ReadFile(root + releaseFile)
	if err != nil {
		return "", fmt.Errorf("reading the release version: %w", err)
	}
	var r struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Version == "" {
		return "", fmt.Errorf("%s: version: expected a version, got %q (%v)", releaseFile, r.Version, err)
	}
	return r.Version, nil
}

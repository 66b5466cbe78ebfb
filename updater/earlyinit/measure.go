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
	"log/slog"
	"os"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

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
// It is encoded here, as plumb-init has always sent it; reading PCR 15
// back after an error (readPCR) uses go-tpm, which plumb-init links for
// the sealed data partition anyway.
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

// Extend attempts and PCR read-backs after an error (extendTries,
// readTries), and the first pause between read-backs (doubled each time).
const (
	extendTries = 3
	readTries   = 3
	readPause   = 100 * time.Millisecond
)

// measurer extends PCR 15 and keeps the log of what PCR 15 holds.
//
// A TPM command can reach the TPM and still come back as an error: the
// kernel's driver gives up waiting for the response (ETIME, "Operation Timed
// out" under a starved emulated machine) while the TPM goes on and executes
// it. So after an extend error the measurer reads PCR 15 back and logs what
// the value shows: the extend took (logged, once per time it took), it did
// not (extended again, up to extendTries), or, when PCR 15 cannot be read
// or holds neither, an EventUnknown entry saying so, after which nothing
// more is extended. The log therefore replays to PCR 15 or says why not.
// A TPM runs one command at a time, so the read-back runs after the failed
// extend if that ever runs. A TPM that stops answering altogether costs
// the kernel's timeouts (2 minutes for TPM2_PCR_Read) per read-back.
type measurer struct {
	tpm   io.ReadWriteCloser // nil: no TPM, nothing is measured
	log   []bootrecord.Measurement
	stuck bool          // an EventUnknown entry was logged: extend no more
	pause time.Duration // first pause between read-backs; 0: readPause
	// warnings says what the measurer did about an extend error (the
	// console); nil discards.
	warnings *slog.Logger
}

func (m *measurer) warn(msg string, args ...any) {
	if m.warnings != nil {
		m.warnings.Warn(msg, args...)
	}
}

// extend extends ms.PCR with ms's digest and logs it as set out on measurer.
// An error means ms is not in the PCR (and not in the log), or that the
// state is unknown (and the log says so).
func (m *measurer) extend(ms bootrecord.Measurement) error {
	d, err := hex.DecodeString(ms.SHA256)
	if err != nil || len(d) != sha256.Size {
		return fmt.Errorf("measurement %s: sha256: expected 64 hex digits, got %q", ms.Type, ms.SHA256)
	}
	if ms.PCR < 0 || ms.PCR > 23 {
		return fmt.Errorf("measurement %s: pcr: expected 0..23, got %d", ms.Type, ms.PCR)
	}
	if m.stuck {
		return fmt.Errorf("measuring %s: not extended: the state of PCR %d is unknown since an earlier extend", ms.Type, ms.PCR)
	}
	before, err := bootrecord.ReplayPCR(m.log, ms.PCR)
	if err != nil {
		return err
	}
	once := extendValue(before, d)
	twice := extendValue(once, d)
	var last error
	for try := 1; try <= extendTries; try++ {
		last = extendPCR(m.tpm, ms.PCR, d)
		if last == nil {
			m.log = append(m.log, ms)
			return nil
		}
		got, rerr := m.readBack(ms.PCR)
		switch {
		case rerr != nil:
			return m.unknown(ms, fmt.Sprintf("the extend failed (%v) and PCR %d could not be read back (%v)", last, ms.PCR, rerr))
		case bytes.Equal(got, once):
			m.warn("the TPM took the extend although it reported an error", "type", ms.Type, "err", last)
			m.log = append(m.log, ms)
			return nil
		case bytes.Equal(got, twice):
			// Never seen: a command that reached the TPM twice. The log
			// says so, and the verifier's one-measurement rule fails it.
			m.warn("the TPM took the extend twice", "type", ms.Type, "err", last)
			m.log = append(m.log, ms, ms)
			return nil
		case bytes.Equal(got, before):
			m.warn("the TPM did not take the extend", "type", ms.Type, "try", try, "of", extendTries, "err", last)
		default:
			return m.unknown(ms, fmt.Sprintf("the extend failed (%v) and PCR %d holds %x, which is neither the log's %x nor that extended with %s",
				last, ms.PCR, got, before, ms.Type))
		}
	}
	return fmt.Errorf("measuring %s: %d tries, PCR %d unchanged: %w", ms.Type, extendTries, ms.PCR, last)
}

// unknown logs an EventUnknown entry for ms and stops the measurer.
func (m *measurer) unknown(ms bootrecord.Measurement, why string) error {
	m.stuck = true
	m.log = append(m.log, bootrecord.UnknownMeasurement(ms, why))
	return fmt.Errorf("measuring %s: %s", ms.Type, why)
}

// readBack reads a sha256 PCR, trying again with growing pauses: the error
// that made it necessary may well hit the read too.
func (m *measurer) readBack(pcr int) ([]byte, error) {
	pause := m.pause
	if pause == 0 {
		pause = readPause
	}
	var err error
	for try := 1; ; try++ {
		var v []byte
		if v, err = readPCR(m.tpm, pcr); err == nil {
			return v, nil
		}
		if try == readTries {
			return nil, fmt.Errorf("%d tries: %w", readTries, err)
		}
		time.Sleep(pause)
		pause *= 2
	}
}

// extendValue is a sha256 PCR's value after extending v with d.
func extendValue(v, d []byte) []byte {
	h := sha256.New()
	h.Write(v)
	h.Write(d)
	return h.Sum(nil)
}

// readPCR reads the sha256 bank's value of a PCR (TPM2_PCR_Read).
func readPCR(rw io.ReadWriter, pcr int) ([]byte, error) {
	sel := make([]byte, 3)
	sel[pcr/8] = 1 << (pcr % 8)
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
		PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}},
	}}.Execute(transport.FromReadWriter(rw))
	if err != nil {
		return nil, fmt.Errorf("reading PCR %d: %w", pcr, err)
	}
	if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
		return nil, fmt.Errorf("reading PCR %d: expected one sha256 value, got %d values", pcr, len(rsp.PCRValues.Digests))
	}
	return rsp.PCRValues.Digests[0].Buffer, nil
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

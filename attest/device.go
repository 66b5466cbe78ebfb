package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Default paths on a device.
const (
	// EventLogPath is where the kernel exposes the UEFI event log
	// (securityfs mounted on /sys/kernel/security).
	EventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
	// PlumbLogPath is plumb-init's log of its PCR 15 extends.
	PlumbLogPath = bootrecord.MeasurementsPath
	// enrolledFile in the device's state dir records the verifier's
	// confirmation of the AK binding.
	enrolledFile = "attest-enrolled.json"
)

// NV indices of the EK certificates (TCG EK Credential Profile 2.0, 2.2.1.5).
const (
	NVIndexEKCertRSA = 0x01c00002
	NVIndexEKCertECC = 0x01c0000a
)

// QuotedPCRs is the sha256 PCR selection every quote covers: PCRs 0-15.
var QuotedPCRs = tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}}

// ekTemplateRSA is the TCG default RSA 2048 EK template (EK Credential
// Profile 2.0, B.3.3, template L-1), the key the manufacturer's
// certificate at NVIndexEKCertRSA certifies.
var ekTemplateRSA = tpm2.Public{
	Type:    tpm2.AlgRSA,
	NameAlg: tpm2.AlgSHA256,
	Attributes: tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin |
		tpm2.FlagAdminWithPolicy | tpm2.FlagRestricted | tpm2.FlagDecrypt,
	AuthPolicy: []byte{ // PolicySecret(TPM_RH_ENDORSEMENT)
		0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
		0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
	},
	RSAParameters: &tpm2.RSAParams{
		Symmetric:  &tpm2.SymScheme{Alg: tpm2.AlgAES, KeyBits: 128, Mode: tpm2.AlgCFB},
		KeyBits:    2048,
		ModulusRaw: make([]byte, 256),
	},
}

// akTemplate is Plumb's attestation key: an ECC P-256 restricted signing
// key (ECDSA/SHA-256) created as a primary in the endorsement hierarchy.
// A primary is derived from the hierarchy's seed and the template, so the
// same AK comes back after every boot without storing a key blob; it
// changes only when the endorsement seed does (TPM2_Clear does not change
// it; TPM2_ChangeEPS does).
var akTemplate = tpm2.Public{
	Type:       tpm2.AlgECC,
	NameAlg:    tpm2.AlgSHA256,
	Attributes: tpm2.FlagSignerDefault | tpm2.FlagNoDA,
	ECCParameters: &tpm2.ECCParams{
		Sign:    &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256},
		CurveID: tpm2.CurveNISTP256,
		// The unique field makes Plumb's AK distinct from any other
		// primary created from the same template.
		Point: tpm2.ECPoint{XRaw: []byte("plumb attestation key"), YRaw: []byte{}},
	},
}

// OpenTPM opens the kernel's TPM resource manager (/dev/tpmrm0), else the
// raw device (/dev/tpm0). Given paths replace these: a character device or
// a TPM emulator's Unix socket (swtpm --server type=unixio).
func OpenTPM(paths ...string) (io.ReadWriteCloser, error) {
	if len(paths) == 0 {
		paths = []string{"/dev/tpmrm0", "/dev/tpm0"}
	}
	var errs []error
	for _, p := range paths {
		rw, err := tpm2.OpenTPM(p)
		if err == nil {
			return rw, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("opening the TPM: %w", errors.Join(errs...))
}

// Device is the TPM side of attestation on one device. Not safe for
// concurrent use.
type Device struct {
	rw       io.ReadWriter
	o        options
	stateDir string
	ek, ak   tpmutil.Handle
	ekPub    []byte // PKIX DER
	ekCert   []byte // DER or nil
	akPub    []byte // TPMT_PUBLIC
	akName   []byte // TPM2B_NAME contents
}

type options struct {
	deviceID     string
	eventLogPath string
	plumbLogPath string
	log          *slog.Logger
}

// Option configures a Device.
type Option func(*options) error

// WithDeviceID sets the device id written into evidence (replaces).
func WithDeviceID(id string) Option {
	return func(o *options) error {
		if err := attestapi.CheckDeviceID(id); err != nil {
			return fmt.Errorf("device id: %w", err)
		}
		o.deviceID = id
		return nil
	}
}

// WithEventLog sets where the UEFI event log is read (replaces
// EventLogPath). A missing file means evidence without an event log.
func WithEventLog(path string) Option {
	return func(o *options) error { o.eventLogPath = path; return nil }
}

// WithPlumbLog sets where plumb-init's measurement log is read (replaces
// PlumbLogPath). A missing file means an empty plumb_log.
func WithPlumbLog(path string) Option {
	return func(o *options) error { o.plumbLogPath = path; return nil }
}

// WithLogger sets the logger (replaces the default, which discards).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// NewDevice creates the EK and the AK in the TPM (transient primaries) and
// reads the EK certificate from NV. stateDir keeps the enrollment record
// (see MarkEnrolled); "" keeps nothing. Close flushes the keys.
func NewDevice(rw io.ReadWriter, stateDir string, opts ...Option) (*Device, error) {
	o := options{deviceID: "unknown", eventLogPath: EventLogPath, plumbLogPath: PlumbLogPath}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	d := &Device{rw: rw, o: o, stateDir: stateDir}
	ek, ekKey, err := tpm2.CreatePrimary(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", ekTemplateRSA)
	if err != nil {
		return nil, fmt.Errorf("creating the endorsement key: %w", err)
	}
	d.ek = ek
	if d.ekPub, err = x509.MarshalPKIXPublicKey(ekKey); err != nil {
		d.Close()
		return nil, fmt.Errorf("encoding the endorsement key: %w", err)
	}
	ak, _, err := tpm2.CreatePrimary(rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", akTemplate)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("creating the attestation key: %w", err)
	}
	d.ak = ak
	pub, _, _, err := tpm2.ReadPublic(rw, ak)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("reading the attestation key: %w", err)
	}
	if d.akPub, err = pub.Encode(); err != nil {
		d.Close()
		return nil, fmt.Errorf("encoding the attestation key: %w", err)
	}
	if d.akName, err = akName(d.akPub); err != nil {
		d.Close()
		return nil, err
	}
	d.ekCert, err = readEKCert(rw, NVIndexEKCertRSA)
	if err != nil {
		o.log.Warn("no EK certificate", "nv_index", fmt.Sprintf("%#x", NVIndexEKCertRSA), "err", err)
	}
	return d, nil
}

// readEKCert reads a DER certificate from an NV index. Some TPMs pad the
// index with zeros or 0xff past the certificate: the DER length decides.
func readEKCert(rw io.ReadWriter, index tpmutil.Handle) ([]byte, error) {
	b, err := tpm2.NVReadEx(rw, index, tpm2.HandleOwner, "", 0)
	if err != nil {
		return nil, err
	}
	n, err := derLength(b)
	if err != nil {
		return nil, fmt.Errorf("EK certificate at %#x: %w", uint32(index), err)
	}
	return b[:n], nil
}

// derLength returns the length of the DER SEQUENCE at the start of b.
func derLength(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("expected a DER SEQUENCE")
	}
	if b[1] < 0x80 {
		return 2 + int(b[1]), nil
	}
	nb := int(b[1] & 0x7f)
	if nb == 0 || nb > 3 || len(b) < 2+nb {
		return 0, errors.New("expected a DER length")
	}
	n := 0
	for _, c := range b[2 : 2+nb] {
		n = n<<8 | int(c)
	}
	n += 2 + nb
	if n > len(b) {
		return 0, fmt.Errorf("DER length %d is past the %d bytes stored", n, len(b))
	}
	return n, nil
}

// Close flushes the keys from the TPM. It does not close the TPM.
func (d *Device) Close() error {
	var errs []error
	for _, h := range []tpmutil.Handle{d.ak, d.ek} {
		if h != 0 {
			errs = append(errs, tpm2.FlushContext(d.rw, h))
		}
	}
	d.ak, d.ek = 0, 0
	return errors.Join(errs...)
}

// EnrollmentRequest returns the device's enrollment request.
func (d *Device) EnrollmentRequest() *attestapi.EnrollRequest {
	return &attestapi.EnrollRequest{DeviceID: d.o.deviceID, EKPublic: d.ekPub, EKCertificate: d.ekCert, AKPublic: d.akPub}
}

// AKPublic returns the AK's TPMT_PUBLIC.
func (d *Device) AKPublic() []byte { return bytes.Clone(d.akPub) }

// EKPublic returns the EK's public key, PKIX DER.
func (d *Device) EKPublic() []byte { return bytes.Clone(d.ekPub) }

// EKCertificate returns the EK certificate (DER), nil if the TPM has none.
func (d *Device) EKCertificate() []byte { return bytes.Clone(d.ekCert) }

// ActivateCredential answers the verifier's challenge (Verifier.Challenge):
// the TPM decrypts the secret only if the AK whose name the verifier used is
// loaded in the same TPM as the EK. credBlob and encSecret are the
// TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, with their size prefixes.
func (d *Device) ActivateCredential(credBlob, encSecret []byte) ([]byte, error) {
	if len(credBlob) < 2 || len(encSecret) < 2 {
		return nil, errors.New("activating the credential: expected a TPM2B credential and secret, got too few bytes")
	}
	sess, _, err := tpm2.StartAuthSession(d.rw, tpm2.HandleNull, tpm2.HandleNull, make([]byte, 16), nil,
		tpm2.SessionPolicy, tpm2.AlgNull, tpm2.AlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("activating the credential: starting a policy session: %w", err)
	}
	defer tpm2.FlushContext(d.rw, sess)
	// The EK's policy: PolicySecret(TPM_RH_ENDORSEMENT).
	if _, _, err := tpm2.PolicySecret(d.rw, tpm2.HandleEndorsement,
		tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession},
		sess, nil, nil, nil, 0); err != nil {
		return nil, fmt.Errorf("activating the credential: endorsement policy: %w", err)
	}
	secret, err := tpm2.ActivateCredentialUsingAuth(d.rw, []tpm2.AuthCommand{
		{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession},
		{Session: sess, Attributes: tpm2.AttrContinueSession},
	}, d.ak, d.ek, credBlob[2:], encSecret[2:])
	if err != nil {
		return nil, fmt.Errorf("activating the credential: %w", err)
	}
	return secret, nil
}

// enrolledRecord is the device's note that a verifier confirmed its AK.
type enrolledRecord struct {
	AKName []byte `json:"ak_name"`
}

// MarkEnrolled records in the state dir that the verifier confirmed this AK.
func (d *Device) MarkEnrolled() error {
	if d.stateDir == "" {
		return nil
	}
	b, _ := json.Marshal(enrolledRecord{AKName: d.akName})
	return atomicfile.WriteFile(filepath.Join(d.stateDir, enrolledFile), b, 0o644)
}

// Enrolled reports whether MarkEnrolled was called for the current AK.
func (d *Device) Enrolled() bool {
	if d.stateDir == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(d.stateDir, enrolledFile))
	if err != nil {
		return false
	}
	var r enrolledRecord
	return json.Unmarshal(b, &r) == nil && bytes.Equal(r.AKName, d.akName)
}

// Evidence quotes PCRs 0-15 over nonce with the AK and gathers the logs.
// The PCR values are read before and after the quote and the quote is
// retried if something extended a PCR in between.
func (d *Device) Evidence(ctx context.Context, nonce []byte, rel attestapi.Release) (*attestapi.Evidence, error) {
	if len(nonce) < attestapi.MinNonceSize || len(nonce) > attestapi.MaxNonceSize {
		return nil, fmt.Errorf("nonce: expected %d..%d bytes, got %d", attestapi.MinNonceSize, attestapi.MaxNonceSize, len(nonce))
	}
	ev := &attestapi.Evidence{
		Version:       attestapi.EvidenceVersion,
		DeviceID:      d.o.deviceID,
		Nonce:         bytes.Clone(nonce),
		AKPublic:      d.akPub,
		EKPublic:      d.ekPub,
		EKCertificate: d.ekCert,
		Release:       rel,
	}
	var err error
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var before, after map[int][]byte
		if before, err = ReadPCRs(d.rw); err != nil {
			return nil, err
		}
		if ev.Quote.Attest, ev.Quote.Signature, err = tpm2.QuoteRaw(d.rw, d.ak, "", "", nonce, QuotedPCRs, tpm2.AlgNull); err != nil {
			return nil, fmt.Errorf("quoting PCRs: %w", err)
		}
		if after, err = ReadPCRs(d.rw); err != nil {
			return nil, err
		}
		if samePCRs(before, after) {
			ev.PCRs = after
			break
		}
		if attempt == 3 {
			return nil, errors.New("quoting PCRs: the PCRs kept changing during the quote")
		}
	}
	ev.EventLog, err = readBounded(d.o.eventLogPath, attestapi.MaxEventLogSize)
	if errors.Is(err, fs.ErrNotExist) {
		if merr := mountSecurityfs(d.o.eventLogPath); merr != nil {
			d.o.log.Warn("securityfs not mounted", "err", merr)
		}
		ev.EventLog, err = readBounded(d.o.eventLogPath, attestapi.MaxEventLogSize)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading the event log: %w", err)
		}
		d.o.log.Warn("no UEFI event log", "path", d.o.eventLogPath)
	}
	ev.PlumbLog, err = readPlumbLog(d.o.plumbLogPath)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func samePCRs(a, b map[int][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		if !bytes.Equal(v, b[i]) {
			return false
		}
	}
	return true
}

// ReadPCRs reads the sha256 values of PCRs 0-15.
func ReadPCRs(rw io.ReadWriter) (map[int][]byte, error) {
	out := make(map[int][]byte, attestapi.QuotedPCRCount)
	// A TPM returns at most 8 digests per TPM2_PCR_Read: read in groups and
	// ask again for what was left out.
	for len(out) < attestapi.QuotedPCRCount {
		var want []int
		for _, i := range QuotedPCRs.PCRs {
			if _, ok := out[i]; !ok && len(want) < 8 {
				want = append(want, i)
			}
		}
		got, err := tpm2.ReadPCRs(rw, tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: want})
		if err != nil {
			return nil, fmt.Errorf("reading PCRs: %w", err)
		}
		if len(got) == 0 {
			return nil, errors.New("reading PCRs: the TPM returned no sha256 values")
		}
		for i, v := range got {
			if len(v) != sha256.Size {
				return nil, fmt.Errorf("reading PCRs: PCR %d: expected 32 bytes, got %d", i, len(v))
			}
			out[i] = v
		}
	}
	return out, nil
}

// readBounded reads a whole (small) file, failing past max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: expected at most %d bytes, got more", path, max)
	}
	return b, nil
}

func readPlumbLog(path string) ([]bootrecord.Measurement, error) {
	b, err := readBounded(path, attestapi.MaxPlumbLogLen*(attestapi.MaxMeasureData+256))
	if errors.Is(err, fs.ErrNotExist) {
		return []bootrecord.Measurement{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading plumb-init's measurements: %w", err)
	}
	var ms []bootrecord.Measurement
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("reading plumb-init's measurements %s: %w", path, err)
	}
	return ms, nil
}

// akName is the TPM name of a public area: nameAlg || H(TPMT_PUBLIC).
func akName(pub []byte) ([]byte, error) {
	p, err := tpm2.DecodePublic(pub)
	if err != nil {
		return nil, fmt.Errorf("decoding the attestation key: %w", err)
	}
	n, err := p.Name()
	if err != nil {
		return nil, fmt.Errorf("naming the attestation key: %w", err)
	}
	return n.Encode()
}

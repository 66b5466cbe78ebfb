// Package attesttest gives tests a real TPM 2.0 (go-tpm-tools' simulator,
// the Microsoft reference implementation, built with cgo), a manufacturer
// CA that provisions an EK certificate into it, and a writer for TCG2
// crypto-agile event logs whose events can also be extended into the
// simulator's PCRs, so that a log replays against real quoted PCRs.
//
// The simulator is a process-wide singleton: one per test at a time.
package attesttest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/format/bootrecord"
)

// Simulator starts a TPM simulator whose seeds derive from seed (so two
// simulators with different seeds are two different TPMs with different
// EKs) and closes it at the end of the test.
func Simulator(t testing.TB, seed int64) io.ReadWriteCloser {
	t.Helper()
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		t.Fatalf("starting the TPM simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// CA is a TPM manufacturer's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed manufacturer CA.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Plumb test TPM manufacturer"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key}
}

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA certificate as PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

var (
	oidSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufact  = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel     = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion   = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidEKCertPurpse = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// Provision certifies the simulator's RSA EK like a manufacturer does (an
// empty subject, a critical subjectAltName holding the TPM's
// manufacturer, model and version as a directoryName, the tcg-kp-EKCertificate
// extended key usage) and writes the DER certificate to NV index
// 0x01c00002. It returns the certificate.
func (ca *CA) Provision(t testing.TB, rw io.ReadWriter) *x509.Certificate {
	t.Helper()
	d, err := attest.NewDevice(rw, "")
	if err != nil {
		t.Fatalf("creating the EK: %v", err)
	}
	ekPub, err := x509.ParsePKIXPublicKey(d.EKPublic())
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	dirName, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidTPMManufact, Value: "id:53494D55"}}, // "SIMU"
		{{Type: oidTPMModel, Value: "simulator"}},
		{{Type: oidTPMVersion, Value: "id:00010002"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// GeneralNames ::= SEQUENCE OF GeneralName; directoryName is [4] EXPLICIT Name.
	san, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dirName})})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(time.Now().UnixNano()),
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(24 * time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCertPurpse},
		ExtraExtensions:    []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ekPub, ca.Key)
	if err != nil {
		t.Fatalf("issuing the EK certificate: %v", err)
	}
	idx := tpmutil.Handle(attest.NVIndexEKCertRSA)
	pub := tpm2.NVPublic{
		NVIndex:    idx,
		NameAlg:    tpm2.AlgSHA256,
		Attributes: tpm2.AttrOwnerWrite | tpm2.AttrOwnerRead | tpm2.AttrAuthRead | tpm2.AttrNoDA,
		DataSize:   uint16(len(der)),
	}
	// A re-provisioned simulator (same seed) may have the index already.
	tpm2.NVUndefineSpace(rw, "", tpm2.HandleOwner, idx)
	if err := tpm2.NVDefineSpaceEx(rw, tpm2.HandleOwner, "", pub, tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession}); err != nil {
		t.Fatalf("defining NV %#x: %v", uint32(idx), err)
	}
	for off := 0; off < len(der); off += 512 {
		end := min(off+512, len(der))
		if err := tpm2.NVWrite(rw, tpm2.HandleOwner, idx, "", der[off:end], uint16(off)); err != nil {
			t.Fatalf("writing NV %#x: %v", uint32(idx), err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func mustMarshal(t testing.TB, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TCG PC Client event types.
const (
	EvNoAction                   = 0x00000003
	EvSeparator                  = 0x00000004
	EvAction                     = 0x00000005
	EvEventTag                   = 0x00000006
	EvSCRTMVersion               = 0x00000008
	EvIPL                        = 0x0000000D
	EvEFIVariableDriverConfig    = 0x80000001
	EvEFIBootServicesApplication = 0x80000003
	EvEFIAction                  = 0x80000007
	EvEFIVariableBoot            = 0x80000002
)

// Event is one event of a log: Digest is the sha256 extended (for most
// events sha256(Data); for an EFI application its Authenticode hash).
type Event struct {
	PCR    int
	Type   uint32
	Data   []byte
	Digest []byte
}

// Hashed is an event whose digest is sha256(data).
func Hashed(pcr int, typ uint32, data []byte) Event {
	s := sha256.Sum256(data)
	return Event{PCR: pcr, Type: typ, Data: data, Digest: s[:]}
}

// BootEvents is the log of a boot like OVMF + systemd-boot + a Linux EFI
// stub give on the test VMs: firmware events and separators in PCRs 0-7,
// systemd-boot and the kernel (by their Authenticode digests) in PCR 4, the
// initrd (its sha256) and the load options in PCR 9, the command line in
// PCR 12. Digests are raw bytes.
func BootEvents(bootloader, kernel, initrd []byte, cmdline string) []Event {
	sep := []byte{0, 0, 0, 0}
	var ev []Event
	ev = append(ev, Hashed(0, EvSCRTMVersion, utf16z("1.0")))
	ev = append(ev, SecureBootOff()...)
	for pcr := 0; pcr <= 7; pcr++ {
		ev = append(ev, Hashed(pcr, EvSeparator, sep))
	}
	ev = append(ev, Hashed(1, EvEFIVariableBoot, []byte("Boot0001")))
	ev = append(ev, Hashed(4, EvEFIAction, []byte("Calling EFI Application from Boot Option")))
	ev = append(ev, Event{PCR: 4, Type: EvEFIBootServicesApplication, Data: []byte("systemd-boot image path"), Digest: bootloader})
	ev = append(ev, Event{PCR: 4, Type: EvEFIBootServicesApplication, Data: []byte("kernel image path"), Digest: kernel})
	opts := utf16z(cmdline)
	ev = append(ev, Hashed(12, EvIPL, opts))
	ev = append(ev, Event{PCR: 9, Type: EvEventTag, Data: tagged(0x8F3B22EC, []byte("Linux initrd\x00")), Digest: initrd})
	lo := sha256.Sum256(opts)
	ev = append(ev, Event{PCR: 9, Type: EvEventTag, Data: tagged(0x8F3B22ED, []byte("LOADED_IMAGE::LoadOptions\x00")), Digest: lo[:]})
	return ev
}

// GUIDs of the UEFI variables PCR 7 measures, in their byte order.
var (
	GlobalVariableGUID = []byte{0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}
	ImageSecurityGUID  = []byte{0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}
)

// Variable is UEFI_VARIABLE_DATA (TCG PC Client PFP, 10.2.6): the data
// of an EV_EFI_VARIABLE_DRIVER_CONFIG event.
func Variable(guid []byte, name string, data []byte) []byte {
	u := utf16.Encode([]rune(name))
	b := append([]byte{}, guid...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(u)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(data)))
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, data...)
}

// SecureBootOff is PCR 7 as OVMF measures it with Secure Boot off and no
// keys enrolled: SecureBoot = 0, PK, KEK, db and dbx empty.
func SecureBootOff() []Event {
	return []Event{
		Hashed(7, EvEFIVariableDriverConfig, Variable(GlobalVariableGUID, "SecureBoot", []byte{0})),
		Hashed(7, EvEFIVariableDriverConfig, Variable(GlobalVariableGUID, "PK", nil)),
		Hashed(7, EvEFIVariableDriverConfig, Variable(GlobalVariableGUID, "KEK", nil)),
		Hashed(7, EvEFIVariableDriverConfig, Variable(ImageSecurityGUID, "db", nil)),
		Hashed(7, EvEFIVariableDriverConfig, Variable(ImageSecurityGUID, "dbx", nil)),
	}
}

func tagged(id uint32, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// utf16z is s as UTF-16LE with a terminating NUL, as EFI strings are.
func utf16z(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// Log writes events as a TCG2 crypto-agile event log (TCG PC Client
// Platform Firmware Profile 2.0, 10.2): a TCG_PCR_EVENT header carrying
// the "Spec ID Event03" structure (sha1 and sha256 banks), then one
// TCG_PCR_EVENT2 per event. The sha1 digest of an event is sha1(data);
// only the sha256 bank is meant to be replayed.
func Log(events []Event) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	binary.Write(&spec, binary.LittleEndian, uint32(0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})                      // minor, major, errata, uintnSize (UINT64)
	binary.Write(&spec, binary.LittleEndian, uint32(2)) // numberOfAlgorithms
	binary.Write(&spec, binary.LittleEndian, []uint16{0x0004, 20, 0x000B, 32})
	spec.WriteByte(0) // vendorInfoSize
	le(uint32(0))
	le(uint32(EvNoAction))
	b.Write(make([]byte, 20))
	le(uint32(spec.Len()))
	b.Write(spec.Bytes())
	for _, e := range events {
		le(uint32(e.PCR))
		le(e.Type)
		le(uint32(2))
		s1 := sha1.Sum(e.Data)
		le(uint16(0x0004))
		b.Write(s1[:])
		le(uint16(0x000B))
		b.Write(e.Digest)
		le(uint32(len(e.Data)))
		b.Write(e.Data)
	}
	return b.Bytes()
}

// Extend extends each event's sha256 digest into the TPM's PCRs, as the
// firmware would have.
func Extend(t testing.TB, rw io.ReadWriter, events []Event) {
	t.Helper()
	for _, e := range events {
		if e.Type == EvNoAction {
			continue
		}
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.PCR), tpm2.AlgSHA256, e.Digest, ""); err != nil {
			t.Fatalf("extending PCR %d: %v", e.PCR, err)
		}
	}
}

// Measure extends PCR 15 like plumb-init and returns the log entries:
// plumb.rootfs (the image's sha256), then plumb.release (sha256 of version).
func Measure(t testing.TB, rw io.ReadWriter, rootfs []byte, version string) []bootrecord.Measurement {
	t.Helper()
	rel := sha256.Sum256([]byte(version))
	ms := []bootrecord.Measurement{
		{PCR: bootrecord.MeasurePCR, SHA256: hexs(rootfs), Type: bootrecord.EventRootfs, Data: hexs(rootfs)},
		{PCR: bootrecord.MeasurePCR, SHA256: hexs(rel[:]), Type: bootrecord.EventRelease, Data: version},
	}
	for _, d := range [][]byte{rootfs, rel[:]} {
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(bootrecord.MeasurePCR), tpm2.AlgSHA256, d, ""); err != nil {
			t.Fatalf("extending PCR 15: %v", err)
		}
	}
	return ms
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

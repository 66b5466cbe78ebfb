package attest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/attest/attesttest"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/internal/testutil"
)

// The tests run against go-tpm-tools' TPM simulator (the TCG reference
// implementation): real TPM commands, real keys, real quotes.

func sum(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

const (
	testDevice  = "dev-0001"
	testVersion = "2.0.0"
	cmdlineA    = `initrd=\EFI\plumb\a\initrd.img root=PARTUUID=1111 ro plumb.slot=a console=ttyS0`
	cmdlineB    = `initrd=\EFI\plumb\b\initrd.img root=PARTUUID=2222 ro plumb.slot=b console=ttyS0`
)

var (
	bootloaderDigest = sum("systemd-boot authenticode")
	kernelDigest     = sum("kernel authenticode")
	initrdDigest     = sum("initrd bytes")
	rootfsDigest     = sum("rootfs image")
)

type rig struct {
	t      *testing.T
	rw     io.ReadWriteCloser
	ca     *attesttest.CA
	dev    *attest.Device
	store  attest.MemStore
	ver    *attest.Verifier
	refs   attest.References
	events []attesttest.Event
	dir    string // the device's logs: measurements.json, binary_bios_measurements
}

// newRig boots a simulated device: a provisioned EK certificate, the
// firmware's events (kernel = kernel) extended and logged, plumb-init's
// PCR 15 measurements, and an AK enrolled with the verifier.
func newRig(t *testing.T, kernel []byte) *rig {
	t.Helper()
	r := &rig{t: t, rw: attesttest.Simulator(t, 1), ca: attesttest.NewCA(t, "Test TPM CA"), store: attest.MemStore{}}
	r.ca.Provision(t, r.rw)
	r.events = attesttest.BootEvents(bootloaderDigest, kernel, initrdDigest, cmdlineA)
	attesttest.Extend(t, r.rw, r.events)
	ms := attesttest.Measure(t, r.rw, rootfsDigest, testVersion)
	dir := t.TempDir()
	r.dir = dir
	writeFile(t, filepath.Join(dir, "binary_bios_measurements"), attesttest.Log(r.events))
	b, _ := json.Marshal(ms)
	writeFile(t, filepath.Join(dir, "measurements.json"), b)
	var err error
	r.dev, err = attest.NewDevice(r.rw, dir, attest.WithDeviceID(testDevice),
		attest.WithEventLog(filepath.Join(dir, "binary_bios_measurements")),
		attest.WithPlumbLog(filepath.Join(dir, "measurements.json")))
	if err != nil {
		t.Fatalf("NewDevice: %v", err)
	}
	t.Cleanup(func() { r.dev.Close() })
	r.ver = attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: r.ca.Pool(), Enrolled: r.store})
	r.enroll()
	r.refs = attest.References{
		Version:    testVersion,
		Rootfs:     hex.EncodeToString(rootfsDigest),
		Bootloader: hex.EncodeToString(bootloaderDigest),
		Kernel:     hex.EncodeToString(kernelDigest),
		Initrd:     hex.EncodeToString(initrdDigest),
		Cmdline:    map[string]string{"a": cmdlineA, "b": cmdlineB},
	}
	return r
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// enroll runs credential activation between the device and the verifier.
func (r *rig) enroll() {
	r.t.Helper()
	req := r.dev.EnrollmentRequest()
	ch, err := r.ver.Challenge(req.DeviceID, req.EKPublic, req.AKPublic)
	if err != nil {
		r.t.Fatalf("Challenge: %v", err)
	}
	secret, err := r.dev.ActivateCredential(ch.CredBlob, ch.EncSecret)
	if err != nil {
		r.t.Fatalf("ActivateCredential: %v", err)
	}
	en, err := r.ver.ConfirmBinding(ch, secret)
	if err != nil {
		r.t.Fatalf("ConfirmBinding: %v", err)
	}
	r.store[en.DeviceID] = en
	if err := r.dev.MarkEnrolled(); err != nil {
		r.t.Fatal(err)
	}
}

func nonce(t *testing.T) []byte {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) evidence(n []byte) *attestapi.Evidence {
	r.t.Helper()
	ev, err := r.dev.Evidence(r.t.Context(), n, attestapi.Release{Version: testVersion, Hardware: "qemu-x86_64", RootfsSHA256: hex.EncodeToString(rootfsDigest)})
	if err != nil {
		r.t.Fatalf("Evidence: %v", err)
	}
	// Through the wire format, as a verifier receives it.
	b, err := json.Marshal(ev)
	if err != nil {
		r.t.Fatal(err)
	}
	got, err := attestapi.ParseEvidence(bytes.NewReader(b))
	if err != nil {
		r.t.Fatalf("ParseEvidence(own output): %v", err)
	}
	return got
}

// expect asserts the status of each named check and that every other
// check passed.
func expect(t *testing.T, rep *attest.Report, verdict string, want map[string]string) {
	t.Helper()
	for _, c := range rep.Checks {
		w, ok := want[c.Name]
		if !ok {
			w = attest.StatusPassed
		}
		if c.Status != w {
			t.Errorf("check %s = %s (expected %q, actual %q, %s), want %s", c.Name, c.Status, c.Expected, c.Actual, c.Detail, w)
		}
	}
	if rep.Verdict != verdict {
		t.Errorf("verdict = %s, want %s", rep.Verdict, verdict)
	}
	if t.Failed() {
		var b strings.Builder
		rep.WriteMarkdown(&b)
		t.Log("\n" + b.String())
	}
}

func TestGoodQuoteVerifies(t *testing.T) {
	r := newRig(t, kernelDigest)
	if !r.dev.Enrolled() {
		t.Error("Enrolled() = false after MarkEnrolled")
	}
	n := nonce(t)
	rep := r.ver.Verify(r.evidence(n), n, r.refs)
	expect(t, rep, attest.VerdictPassed, nil)
	if len(rep.Checks) != 15 {
		t.Errorf("%d checks, want 15", len(rep.Checks))
	}
	if c := rep.Check(attest.CheckCmdline); c != nil && !strings.Contains(c.Expected, "slot a") {
		t.Errorf("cmdline check expected = %q, want the slot a line", c.Expected)
	}
}

func TestWrongNonce(t *testing.T) {
	r := newRig(t, kernelDigest)
	ev := r.evidence(nonce(t))
	rep := r.ver.Verify(ev, nonce(t), r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{attest.CheckNonce: attest.StatusFailed})
	if c := rep.Check(attest.CheckNonce); c.Actual != hex.EncodeToString(ev.Nonce) {
		t.Errorf("quote_nonce actual = %s, want the quoted nonce %x", c.Actual, ev.Nonce)
	}
}

// A quote made for an earlier challenge, resubmitted with its nonce field
// rewritten to the current challenge: the signed nonce still betrays it.
func TestReplayedQuote(t *testing.T) {
	r := newRig(t, kernelDigest)
	old := nonce(t)
	ev := r.evidence(old)
	expect(t, r.ver.Verify(ev, old, r.refs), attest.VerdictPassed, nil)

	fresh := nonce(t)
	ev.Nonce = fresh
	rep := r.ver.Verify(ev, fresh, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{attest.CheckNonce: attest.StatusFailed})
	c := rep.Check(attest.CheckNonce)
	if c.Actual != hex.EncodeToString(old) || !strings.Contains(c.Detail, "replayed") {
		t.Errorf("quote_nonce = %+v, want actual = the old nonce and a replay detail", c)
	}
}

// A quote signed by another AK of the same TPM, presented with the
// enrolled AK's public key.
func TestQuoteFromAnotherAK(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	other := tpm2.Public{
		Type: tpm2.AlgECC, NameAlg: tpm2.AlgSHA256, Attributes: tpm2.FlagSignerDefault | tpm2.FlagNoDA,
		ECCParameters: &tpm2.ECCParams{Sign: &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256}, CurveID: tpm2.CurveNISTP256,
			Point: tpm2.ECPoint{XRaw: []byte("another key"), YRaw: []byte{}}},
	}
	h, _, err := tpm2.CreatePrimary(r.rw, tpm2.HandleEndorsement, tpm2.PCRSelection{}, "", "", other)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext(r.rw, h)
	ev.Quote.Attest, ev.Quote.Signature, err = tpm2.QuoteRaw(r.rw, h, "", "", n, attest.QuotedPCRs, tpm2.AlgNull)
	if err != nil {
		t.Fatal(err)
	}
	rep := r.ver.Verify(ev, n, r.refs)
	// Nothing the quote says can be used: the rest is not checkable.
	expect(t, rep, attest.VerdictFailed, map[string]string{
		attest.CheckQuoteSignature: attest.StatusFailed,
		attest.CheckNonce:          attest.StatusNotCheckable,
		attest.CheckPCRDigest:      attest.StatusNotCheckable,
		attest.CheckEventLog:       attest.StatusNotCheckable,
		attest.CheckPlumbLog:       attest.StatusNotCheckable,
		attest.CheckBootloader:     attest.StatusNotCheckable,
		attest.CheckKernel:         attest.StatusNotCheckable,
		attest.CheckInitrd:         attest.StatusNotCheckable,
		attest.CheckCmdline:        attest.StatusNotCheckable,
		attest.CheckSecureBoot:     attest.StatusNotCheckable,
		attest.CheckVerityRoot:     attest.StatusNotCheckable,
		attest.CheckRootfs:         attest.StatusNotCheckable,
		attest.CheckRelease:        attest.StatusNotCheckable,
	})
	if c := rep.Check(attest.CheckQuoteSignature); !strings.Contains(c.Detail, "does not verify") {
		t.Errorf("quote_signature detail = %q, want the signature failure", c.Detail)
	}
}

// softwareAK is an attacker's key: a TPMT_PUBLIC claiming the attributes
// of a TPM-resident restricted key, whose private key is in memory.
func softwareAK(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.Public{
		Type: tpm2.AlgECC, NameAlg: tpm2.AlgSHA256, Attributes: tpm2.FlagSignerDefault | tpm2.FlagNoDA,
		ECCParameters: &tpm2.ECCParams{Sign: &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256}, CurveID: tpm2.CurveNISTP256,
			Point: tpm2.ECPoint{XRaw: key.X.FillBytes(make([]byte, 32)), YRaw: key.Y.FillBytes(make([]byte, 32))}},
	}
	b, err := pub.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return key, b
}

func signECDSA(t *testing.T, key *ecdsa.PrivateKey, msg []byte) []byte {
	d := sha256.Sum256(msg)
	rr, ss, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := tpm2.Signature{Alg: tpm2.AlgECDSA, ECC: &tpm2.SignatureECC{HashAlg: tpm2.AlgSHA256, R: new(big.Int).Set(rr), S: new(big.Int).Set(ss)}}
	b, err := sig.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An AK that was never bound to the device's EK: a software key signing a
// copy of a genuine quote structure. The signature verifies; the binding
// does not.
func TestAKNotBoundToEK(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	key, pub := softwareAK(t)
	ev.AKPublic = pub
	ev.Quote.Signature = signECDSA(t, key, ev.Quote.Attest)
	rep := r.ver.Verify(ev, n, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{attest.CheckAKBinding: attest.StatusFailed})
	if c := rep.Check(attest.CheckAKBinding); !strings.Contains(c.Detail, "never bound") {
		t.Errorf("ak_binding detail = %q, want 'never bound'", c.Detail)
	}

	// The same key cannot be enrolled: the TPM refuses to activate a
	// credential for a name that is not its loaded AK.
	ch, err := r.ver.Challenge(testDevice, ev.EKPublic, pub)
	if err != nil {
		t.Fatal(err)
	}
	if secret, err := r.dev.ActivateCredential(ch.CredBlob, ch.EncSecret); err == nil {
		t.Errorf("ActivateCredential for a foreign AK returned a secret (%x), want a TPM error", secret)
	}
	if _, err := r.ver.ConfirmBinding(ch, make([]byte, 32)); err == nil {
		t.Error("ConfirmBinding with a guessed secret succeeded")
	}
}

func TestDeviceNotEnrolled(t *testing.T) {
	r := newRig(t, kernelDigest)
	delete(r.store, testDevice)
	n := nonce(t)
	rep := r.ver.Verify(r.evidence(n), n, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{attest.CheckAKBinding: attest.StatusFailed})
	if c := rep.Check(attest.CheckAKBinding); !strings.Contains(c.Actual, "not enrolled") {
		t.Errorf("ak_binding actual = %q, want 'not enrolled'", c.Actual)
	}
}

// PCR 4 is extended with something the event log does not record.
func TestPCRsDoNotMatchEventLog(t *testing.T) {
	r := newRig(t, kernelDigest)
	if err := tpm2.PCRExtend(r.rw, tpmutil.Handle(4), tpm2.AlgSHA256, sum("unlogged code"), ""); err != nil {
		t.Fatal(err)
	}
	n := nonce(t)
	rep := r.ver.Verify(r.evidence(n), n, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{
		attest.CheckEventLog:   attest.StatusFailed,
		attest.CheckBootloader: attest.StatusNotCheckable,
		attest.CheckKernel:     attest.StatusNotCheckable,
		attest.CheckInitrd:     attest.StatusNotCheckable,
		attest.CheckCmdline:    attest.StatusNotCheckable,
		attest.CheckSecureBoot: attest.StatusNotCheckable,
		attest.CheckVerityRoot: attest.StatusNotCheckable,
	})
	if c := rep.Check(attest.CheckEventLog); !strings.Contains(c.Detail, "PCR 4: quoted") || c.Actual != "PCRs [4] differ" {
		t.Errorf("event_log = %+v, want PCR 4 named", c)
	}
}

// The evidence's PCR values are edited to match a doctored event log.
func TestPCRValuesNotQuoted(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	ev.PCRs[4] = sum("doctored")
	rep := r.ver.Verify(ev, n, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{
		attest.CheckPCRDigest:  attest.StatusFailed,
		attest.CheckEventLog:   attest.StatusNotCheckable,
		attest.CheckPlumbLog:   attest.StatusNotCheckable,
		attest.CheckBootloader: attest.StatusNotCheckable,
		attest.CheckKernel:     attest.StatusNotCheckable,
		attest.CheckInitrd:     attest.StatusNotCheckable,
		attest.CheckCmdline:    attest.StatusNotCheckable,
		attest.CheckSecureBoot: attest.StatusNotCheckable,
		attest.CheckVerityRoot: attest.StatusNotCheckable,
		attest.CheckRootfs:     attest.StatusNotCheckable,
		attest.CheckRelease:    attest.StatusNotCheckable,
	})
}

func TestTamperedKernel(t *testing.T) {
	tampered := sum("tampered kernel authenticode")
	r := newRig(t, tampered)
	n := nonce(t)
	rep := r.ver.Verify(r.evidence(n), n, r.refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{attest.CheckKernel: attest.StatusFailed})
	c := rep.Check(attest.CheckKernel)
	if c.Expected != hex.EncodeToString(kernelDigest) || c.Actual != hex.EncodeToString(tampered) {
		t.Errorf("kernel check = %+v, want expected = reference, actual = tampered digest", c)
	}
}

func TestWrongReferences(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	refs := r.refs
	refs.Initrd = hex.EncodeToString(sum("other initrd"))
	refs.Rootfs = hex.EncodeToString(sum("other rootfs"))
	refs.Version = "3.0.0"
	refs.Cmdline = map[string]string{"a": "root=other"}
	refs.Bootloader = hex.EncodeToString(sum("other bootloader"))
	rep := r.ver.Verify(ev, n, refs)
	expect(t, rep, attest.VerdictFailed, map[string]string{
		attest.CheckInitrd: attest.StatusFailed, attest.CheckRootfs: attest.StatusFailed,
		attest.CheckRelease: attest.StatusFailed, attest.CheckCmdline: attest.StatusFailed,
		attest.CheckBootloader: attest.StatusFailed,
	})
	if c := rep.Check(attest.CheckCmdline); c.Actual != `"`+cmdlineA+`"` {
		t.Errorf("cmdline actual = %s, want the measured line", c.Actual)
	}
}

func TestEKCertificate(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)

	other := attesttest.NewCA(t, "Another CA")
	v := attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: other.Pool(), Enrolled: r.store})
	expect(t, v.Verify(ev, n, r.refs), attest.VerdictFailed, map[string]string{attest.CheckEKCertificate: attest.StatusFailed})

	v = attest.NewVerifier(attest.VerifierOptions{Enrolled: r.store})
	expect(t, v.Verify(ev, n, r.refs), attest.VerdictIncomplete, map[string]string{attest.CheckEKCertificate: attest.StatusNotCheckable})

	noCert := *ev
	noCert.EKCertificate = nil
	expect(t, r.ver.Verify(&noCert, n, r.refs), attest.VerdictFailed, map[string]string{attest.CheckEKCertificate: attest.StatusFailed})
}

func TestNoNonceIsIncomplete(t *testing.T) {
	r := newRig(t, kernelDigest)
	rep := r.ver.Verify(r.evidence(nonce(t)), nil, r.refs)
	expect(t, rep, attest.VerdictIncomplete, map[string]string{attest.CheckNonce: attest.StatusNotCheckable})
}

func TestReportMarkdown(t *testing.T) {
	r := newRig(t, sum("tampered"))
	n := nonce(t)
	rep := r.ver.Verify(r.evidence(n), n, r.refs)
	var b strings.Builder
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"**Verdict: FAILED**", "| ❌ | Kernel or UKI (PCR 4) (`kernel`) | failed", "Failed: kernel."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "\n| "); n != 17 { // header, separator, 15 checks
		t.Errorf("markdown has %d table lines, want 17:\n%s", n, md)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back attest.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Verdict != attest.VerdictFailed || len(back.Checks) != 15 {
		t.Errorf("JSON report round trip: %v, %+v", err, back)
	}
}

// Cross-check with an independent implementation: tpm2-tools'
// tpm2_checkquote accepts the exported quote, signature, AK and PCRs, and
// rejects them for another nonce or other PCR values.
func TestTPM2CheckquoteAcceptsExport(t *testing.T) {
	tool := testutil.RequireTool(t, "tpm2_checkquote", "tpm2-tools")
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	dir := t.TempDir()
	if d := os.Getenv("KEEP_EXPORT"); d != "" {
		dir = d
	}
	if err := attest.Export(ev, dir); err != nil {
		t.Fatal(err)
	}
	run := func(nonce []byte) (string, error) {
		out, err := exec.Command(tool, attest.CheckquoteArgs(dir, nonce)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run(n); err != nil {
		t.Fatalf("tpm2_checkquote on the export: %v\n%s", err, out)
	}
	if out, err := run(nonce(t)); err == nil {
		t.Errorf("tpm2_checkquote accepted a wrong nonce:\n%s", out)
	}
	pcrs, _ := os.ReadFile(filepath.Join(dir, attest.ExportPCRs))
	pcrs[132+4+4+4*66+2] ^= 1 // PCR 4: after the selection, the list count, the first list's count, 4 TPM2B_DIGESTs and a size
	writeFile(t, filepath.Join(dir, attest.ExportPCRs), pcrs)
	if out, err := run(n); err == nil {
		t.Errorf("tpm2_checkquote accepted a changed PCR 4:\n%s", out)
	}
}

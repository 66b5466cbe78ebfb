package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/legacy/tpm2/credactivation"

	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/bootrecord"
)

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// ManufacturerCAs are the roots (and intermediates) EK certificates
	// must chain to; nil makes the ek_certificate check "not checkable".
	ManufacturerCAs *x509.CertPool
	// Enrolled holds the AK bindings; nil makes ak_binding "not checkable".
	Enrolled EnrollmentStore
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verifier checks evidence. Safe for concurrent use if its store is.
type Verifier struct{ o VerifierOptions }

// NewVerifier returns a verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Verifier{o: o}
}

// Check names, in report order.
const (
	CheckEKCertificate  = "ek_certificate"
	CheckAKBinding      = "ak_binding"
	CheckQuoteSignature = "quote_signature"
	CheckNonce          = "quote_nonce"
	CheckPCRDigest      = "pcr_digest"
	CheckEventLog       = "event_log"
	CheckPlumbLog       = "plumb_log"
	CheckBootloader     = "bootloader"
	CheckKernel         = "kernel"
	CheckInitrd         = "initrd"
	CheckCmdline        = "cmdline"
	CheckVerityRoot     = "verity_root"
	CheckSecureBoot     = "secure_boot"
	CheckRootfs         = "rootfs"
	CheckRelease        = "release"
)

// Challenge is a credential activation challenge for one device's EK and
// AK. CredBlob and EncSecret go to the device; Secret stays with the
// verifier until ConfirmBinding.
type Challenge struct {
	DeviceID  string `json:"device_id"`
	EKPublic  []byte `json:"ek_public"`
	AKPublic  []byte `json:"ak_public"`
	CredBlob  []byte `json:"cred_blob"`  // TPM2B_ID_OBJECT
	EncSecret []byte `json:"enc_secret"` // TPM2B_ENCRYPTED_SECRET
	Secret    []byte `json:"secret"`     // never sent to the device
}

// Challenge makes a credential (TPM2_MakeCredential, in software) that only
// the TPM holding ekPub's private key can open, and only for the AK named by
// akPub. akPub must be a restricted signing key that cannot leave its TPM.
func (v *Verifier) Challenge(deviceID string, ekPub, akPub []byte) (*Challenge, error) {
	if err := attestapi.CheckDeviceID(deviceID); err != nil {
		return nil, fmt.Errorf("device_id: %w", err)
	}
	ek, err := x509.ParsePKIXPublicKey(ekPub)
	if err != nil {
		return nil, fmt.Errorf("ek_public: expected a PKIX public key: %w", err)
	}
	if _, ok := ek.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("ek_public: expected an RSA endorsement key, got %T", ek)
	}
	pub, err := checkAK(akPub)
	if err != nil {
		return nil, err
	}
	name, err := pub.Name()
	if err != nil || name.Digest == nil {
		return nil, fmt.Errorf("ak_public: cannot compute its name: %v", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	blob, enc, err := credactivation.Generate(name.Digest, ek, 16, secret)
	if err != nil {
		return nil, fmt.Errorf("making the credential: %w", err)
	}
	return &Challenge{DeviceID: deviceID, EKPublic: bytes.Clone(ekPub), AKPublic: bytes.Clone(akPub), CredBlob: blob, EncSecret: enc, Secret: secret}, nil
}

// ErrBindingRefused is returned by ConfirmBinding for a wrong secret.
var ErrBindingRefused = errors.New("credential activation failed: the secret does not match")

// ConfirmBinding compares the device's answer with the challenge's secret
// and returns the enrollment to store.
func (v *Verifier) ConfirmBinding(ch *Challenge, secret []byte) (*Enrollment, error) {
	if ch == nil || len(ch.Secret) == 0 || subtle.ConstantTimeCompare(ch.Secret, secret) != 1 {
		return nil, ErrBindingRefused
	}
	return &Enrollment{DeviceID: ch.DeviceID, EKPublic: ch.EKPublic, AKPublic: ch.AKPublic, Enrolled: v.o.Now().UTC()}, nil
}

// checkAK decodes an AK public area and checks it is a restricted signing
// key generated in and bound to its TPM.
func checkAK(akPub []byte) (tpm2.Public, error) {
	pub, err := tpm2.DecodePublic(akPub)
	if err != nil {
		return pub, fmt.Errorf("ak_public: expected a TPMT_PUBLIC: %v", err)
	}
	want := tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagRestricted | tpm2.FlagSign
	if pub.Attributes&want != want || pub.Attributes&tpm2.FlagDecrypt != 0 {
		return pub, fmt.Errorf("ak_public: expected a restricted signing key (fixedTPM, fixedParent, sensitiveDataOrigin), got attributes %#x", uint32(pub.Attributes))
	}
	if pub.NameAlg != tpm2.AlgSHA256 {
		return pub, fmt.Errorf("ak_public: expected name algorithm sha256, got %v", pub.NameAlg)
	}
	if _, err := pub.Key(); err != nil {
		return pub, fmt.Errorf("ak_public: %v", err)
	}
	return pub, nil
}

// Verify checks evidence against the nonce the verifier issued for it
// (nil: freshness is not checkable) and the reference values of the
// release the device claims. It never fails: everything it finds is a
// Check in the report.
func (v *Verifier) Verify(ev *attestapi.Evidence, nonce []byte, refs References) *Report {
	r := &Report{DeviceID: ev.DeviceID, Release: ev.Release.Version, Hardware: ev.Release.Hardware, Time: v.o.Now().UTC()}
	r.add(v.checkEKCert(ev))
	r.add(v.checkBinding(ev))

	sig := checkSignature(ev)
	r.add(sig.Check)
	r.add(checkNonce(sig.info, ev, nonce))
	pcrs := checkPCRDigest(sig.info, ev)
	r.add(pcrs)

	// What follows reads PCR values: they mean something only if the
	// quote is authentic and covers them.
	trusted := sig.Status == StatusPassed && pcrs.Status == StatusPassed
	why := "the PCR values are not authenticated by the quote (" + firstFailed(sig.Check, pcrs) + ")"

	var chain *bootChain
	if !trusted {
		r.add(notCheckable(CheckEventLog, why))
	} else {
		c, ch := checkEventLog(ev)
		r.add(c)
		chain = ch
	}
	logOK := false
	if !trusted {
		r.add(notCheckable(CheckPlumbLog, why))
	} else {
		c := checkPlumbLog(ev, refs)
		logOK = c.Status == StatusPassed
		r.add(c)
	}
	chainWhy := "the event log did not verify against the quoted PCRs"
	if !trusted {
		chainWhy = why
	}
	r.add(checkSecureBoot(chain, refs, chainWhy))
	r.add(checkBootloader(chain, refs, chainWhy))
	r.add(checkKernel(chain, refs, chainWhy))
	r.add(checkInitrd(chain, refs, chainWhy))
	r.add(checkCmdline(chain, refs, chainWhy))
	r.add(checkVerityRoot(chain, refs, chainWhy))
	plumbWhy := "plumb-init's log did not replay to the quoted PCR 15"
	if !trusted {
		plumbWhy = why
	}
	r.add(checkRootfs(ev, logOK, refs, plumbWhy))
	r.add(checkRelease(ev, logOK, refs, plumbWhy))
	r.finish()
	return r
}

func firstFailed(cs ...Check) string {
	for _, c := range cs {
		if c.Status != StatusPassed {
			return c.Name + " " + c.Status
		}
	}
	return ""
}

func (v *Verifier) checkEKCert(ev *attestapi.Evidence) Check {
	c := Check{Name: CheckEKCertificate, Expected: "an EK certificate chaining to a manufacturer CA, for the EK in the evidence"}
	if v.o.ManufacturerCAs == nil {
		return c.notCheckable("no manufacturer CA configured (--ek-ca)")
	}
	if len(ev.EKCertificate) == 0 {
		return c.fail("no EK certificate in the evidence", "the TPM has no certificate at NV 0x01c00002")
	}
	cert, err := x509.ParseCertificate(ev.EKCertificate)
	if err != nil {
		return c.fail("an unparseable certificate", err.Error())
	}
	// EK certificates carry a critical subjectAltName holding only a
	// directoryName (TPM manufacturer, model, version), which Go does not
	// parse and so lists as unhandled.
	unhandled := cert.UnhandledCriticalExtensions[:0]
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	subject := certName(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.o.ManufacturerCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: v.o.Now()}); err != nil {
		return c.fail("certificate issued by "+cert.Issuer.String(), err.Error())
	}
	certKey, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil || !bytes.Equal(certKey, ev.EKPublic) {
		return c.fail("the certified key is not ek_public", "the certificate is valid but certifies another key")
	}
	c.Actual = subject + ", issued by " + cert.Issuer.String()
	return c.pass()
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func certName(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "serial " + c.SerialNumber.String()
}

func (v *Verifier) checkBinding(ev *attestapi.Evidence) Check {
	c := Check{Name: CheckAKBinding, Expected: "the AK enrolled for this device and EK by credential activation"}
	if _, err := checkAK(ev.AKPublic); err != nil {
		return c.fail("an unusable AK", err.Error())
	}
	if v.o.Enrolled == nil {
		return c.notCheckable("no enrollment store configured (--enrolled)")
	}
	en, err := v.o.Enrolled.Lookup(ev.DeviceID)
	if errors.Is(err, ErrNotEnrolled) {
		return c.fail("device "+ev.DeviceID+" is not enrolled", "no credential activation was completed for this device")
	}
	if err != nil {
		return c.notCheckable("reading the enrollment: " + err.Error())
	}
	if !bytes.Equal(en.EKPublic, ev.EKPublic) {
		return c.fail("EK "+fingerprint(ev.EKPublic), "device is enrolled with EK "+fingerprint(en.EKPublic))
	}
	if !bytes.Equal(en.AKPublic, ev.AKPublic) {
		c.Expected = "AK " + fingerprint(en.AKPublic) + " (enrolled " + en.Enrolled.Format(time.RFC3339) + ")"
		return c.fail("AK "+fingerprint(ev.AKPublic), "this AK was never bound to the device's EK by credential activation")
	}
	c.Actual = "AK " + fingerprint(ev.AKPublic) + " enrolled " + en.Enrolled.Format(time.RFC3339)
	return c.pass()
}

// fingerprint is a short sha256 of a key encoding, for reports.
func fingerprint(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:8])
}

type sigResult struct {
	Check
	info *tpm2.AttestationData
}

func checkSignature(ev *attestapi.Evidence) sigResult {
	c := Check{Name: CheckQuoteSignature, Expected: "a TPM-generated quote signed by the AK"}
	r := sigResult{}
	pub, err := tpm2.DecodePublic(ev.AKPublic)
	if err != nil {
		r.Check = c.fail("an undecodable AK", err.Error())
		return r
	}
	key, err := pub.Key()
	if err != nil {
		r.Check = c.fail("an unusable AK", err.Error())
		return r
	}
	info, err := decodeAttest(ev.Quote.Attest)
	if err != nil {
		r.Check = c.fail("an undecodable quote", err.Error())
		return r
	}
	if err := verifySig(key, ev.Quote.Attest, ev.Quote.Signature); err != nil {
		r.Check = c.fail("a signature that does not verify with ak_public", err.Error())
		return r
	}
	if info.Magic != 0xff544347 || info.Type != tpm2.TagAttestQuote || info.AttestedQuoteInfo == nil {
		r.Check = c.fail(fmt.Sprintf("a structure of type %#x with magic %#x", uint16(info.Type), info.Magic), "signed by the AK but not a TPM-generated quote")
		return r
	}
	r.info = info
	c.Actual = "signature by AK " + fingerprint(ev.AKPublic) + " verified"
	r.Check = c.pass()
	return r
}

// decodeAttest wraps the decoder so hostile bytes only give an error.
func decodeAttest(b []byte) (info *tpm2.AttestationData, err error) {
	defer func() {
		if r := recover(); r != nil {
			info, err = nil, fmt.Errorf("quote.attest: unparseable (%v)", r)
		}
	}()
	return tpm2.DecodeAttestationData(b)
}

func verifySig(key crypto.PublicKey, msg, sigBytes []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("quote.signature: unparseable (%v)", r)
		}
	}()
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(sigBytes))
	if err != nil {
		return fmt.Errorf("quote.signature: %v", err)
	}
	if sig.Alg == tpm2.AlgECDSA && sig.ECC != nil && sig.ECC.HashAlg != tpm2.AlgSHA256 ||
		sig.RSA != nil && sig.RSA.HashAlg != tpm2.AlgSHA256 {
		return errors.New("quote.signature: expected a sha256 signature")
	}
	digest := sha256.Sum256(msg)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if sig.ECC == nil {
			return fmt.Errorf("expected an ECDSA signature, got algorithm %v", sig.Alg)
		}
		if !ecdsa.Verify(k, digest[:], new(big.Int).Set(sig.ECC.R), new(big.Int).Set(sig.ECC.S)) {
			return errors.New("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if sig.RSA == nil {
			return fmt.Errorf("expected an RSA signature, got algorithm %v", sig.Alg)
		}
		switch sig.Alg {
		case tpm2.AlgRSASSA:
			err = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig.RSA.Signature)
		case tpm2.AlgRSAPSS:
			err = rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig.RSA.Signature, nil)
		default:
			err = fmt.Errorf("unsupported RSA scheme %v", sig.Alg)
		}
		return err
	default:
		return fmt.Errorf("unsupported AK type %T", key)
	}
	return nil
}

func checkNonce(info *tpm2.AttestationData, ev *attestapi.Evidence, nonce []byte) Check {
	c := Check{Name: CheckNonce}
	if nonce == nil {
		return c.notCheckable("no expected nonce given: freshness unknown (--nonce)")
	}
	c.Expected = hex.EncodeToString(nonce)
	if info == nil {
		return c.notCheckableWhy("the quote is not authenticated (quote_signature)")
	}
	got := []byte(info.ExtraData)
	if subtle.ConstantTimeCompare(got, nonce) != 1 {
		c.Actual = hex.EncodeToString(got)
		c.Status = StatusFailed
		c.Detail = "the quote was made over another nonce: stale, replayed or not made for this challenge"
		if !bytes.Equal(ev.Nonce, got) {
			c.Detail += "; the evidence's nonce field (" + hex.EncodeToString(ev.Nonce) + ") does not match the signed one either"
		}
		return c
	}
	c.Actual = c.Expected
	return c.pass()
}

func checkPCRDigest(info *tpm2.AttestationData, ev *attestapi.Evidence) Check {
	c := Check{Name: CheckPCRDigest, Expected: "sha256 PCRs 0-15 whose digest is the quoted one"}
	if info == nil {
		return c.notCheckableWhy("the quote is not authenticated (quote_signature)")
	}
	q := info.AttestedQuoteInfo
	sel := q.PCRSelection
	if sel.Hash != tpm2.AlgSHA256 || !samePCRList(sel.PCRs, QuotedPCRs.PCRs) {
		return c.fail(fmt.Sprintf("a quote over %v PCRs %v", sel.Hash, sel.PCRs), "the quote does not cover sha256 PCRs 0-15")
	}
	h := sha256.New()
	for i := range attestapi.QuotedPCRCount {
		h.Write(ev.PCRs[i])
	}
	got := h.Sum(nil)
	c.Expected = hex.EncodeToString(q.PCRDigest)
	c.Actual = hex.EncodeToString(got)
	if !bytes.Equal(got, q.PCRDigest) {
		c.Status = StatusFailed
		c.Detail = "the PCR values in the evidence are not the ones the TPM quoted"
		return c
	}
	return c.pass()
}

func samePCRList(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[int]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return len(seen) == len(b)
}

func checkEventLog(ev *attestapi.Evidence) (Check, *bootChain) {
	c := Check{Name: CheckEventLog, Expected: "the UEFI event log replays to the quoted PCRs"}
	if len(ev.EventLog) == 0 {
		return c.notCheckable("the device sent no UEFI event log"), nil
	}
	events, err := replayLog(ev.EventLog, ev.PCRs)
	if err != nil {
		var re *replayError
		if errors.As(err, &re) {
			c.Actual = fmt.Sprintf("PCRs %v differ", re.pcrs)
			c.Status = StatusFailed
			c.Detail = re.msg
			return c, nil
		}
		return c.fail("an unparseable event log", err.Error()), nil
	}
	ch := chainFrom(events)
	c.Actual = fmt.Sprintf("%d events replayed", len(events))
	return c.pass(), &ch
}

// checkPlumbLog replays plumb-init's log against the quoted PCR 15. A log
// that does not replay fails, and the detail names the first event PCR 15
// does not reflect, as far as the value tells (measure.go in
// updater/earlyinit says how plumb-init keeps the log true to PCR 15).
func checkPlumbLog(ev *attestapi.Evidence, refs References) Check {
	c := Check{Name: CheckPlumbLog, Expected: "plumb-init's measurements replay to the quoted PCR 15"}
	var events []plumbEvent
	unknown := -1
	for i, m := range ev.PlumbLog {
		if m.PCR != bootrecord.MeasurePCR {
			continue
		}
		d, _ := hex.DecodeString(m.SHA256)
		switch m.Type {
		case bootrecord.EventUnknown:
			if unknown < 0 {
				unknown = i
			}
			continue
		case bootrecord.EventRelease:
			s := sha256.Sum256([]byte(m.Data))
			if !bytes.Equal(s[:], d) {
				return c.fail(fmt.Sprintf("plumb_log[%d] digest %s", i, m.SHA256), "a plumb.release digest is not the sha256 of its data")
			}
		}
		events = append(events, plumbEvent{i: i, m: m, digest: d})
	}
	v := replayEvents(events, -1, -1)
	quoted := ev.PCRs[bootrecord.MeasurePCR]
	c.Expected = hex.EncodeToString(quoted)
	c.Actual = hex.EncodeToString(v)
	if unknown >= 0 {
		c.Status = StatusFailed
		c.Detail = fmt.Sprintf("plumb_log[%d]: plumb-init could not tell whether an extend reached PCR 15, and measured nothing after it: %s (expected = quoted PCR 15, actual = replay of the other events)",
			unknown, quote(ev.PlumbLog[unknown].Data))
		return c
	}
	if !bytes.Equal(v, quoted) {
		c.Status = StatusFailed
		c.Detail = "the measurement log does not explain PCR 15 (expected = quoted PCR 15, actual = log replay): " + divergence(events, quoted, expectedEvents(ev, refs))
		return c
	}
	if len(ev.PlumbLog) == 0 {
		c.Detail = "no measurements: PCR 15 is untouched"
	}
	return c.pass()
}

// plumbEvent is one PCR 15 extend of the plumb log: its index in the log,
// the entry and its digest.
type plumbEvent struct {
	i      int // -1: not in the log (expectedEvents)
	m      bootrecord.Measurement
	digest []byte
	whose  string // for an expected event: whose value it is
}

func (e plumbEvent) String() string {
	data := e.m.Data
	if len(data) > 80 {
		data = data[:80] + "…"
	}
	if e.i < 0 {
		return fmt.Sprintf("%s %s (%s)", e.m.Type, quote(data), e.whose)
	}
	return fmt.Sprintf("plumb_log[%d] (%s %s)", e.i, e.m.Type, quote(data))
}

// replayEvents replays events from zeros, leaving out the one at index
// skip and extending the one at index twice twice (-1: none).
func replayEvents(events []plumbEvent, skip, twice int) []byte {
	v := make([]byte, sha256.Size)
	extend := func(d []byte) {
		h := sha256.New()
		h.Write(v)
		h.Write(d)
		v = h.Sum(nil)
	}
	for j, e := range events {
		if j == skip {
			continue
		}
		extend(e.digest)
		if j == twice {
			extend(e.digest)
		}
	}
	return v
}

// expectedEvents are the extends a log that does not replay may lack: the
// release's reference rootfs and version, and those the device claims.
func expectedEvents(ev *attestapi.Evidence, refs References) []plumbEvent {
	var out []plumbEvent
	add := func(m bootrecord.Measurement, whose string) {
		d, err := hex.DecodeString(m.SHA256)
		if err != nil || len(d) != sha256.Size {
			return
		}
		for _, e := range out {
			if bytes.Equal(e.digest, d) {
				return
			}
		}
		out = append(out, plumbEvent{i: -1, m: m, digest: d, whose: whose})
	}
	if refs.Rootfs != "" {
		add(bootrecord.RootfsMeasurement(refs.Rootfs), "the release's reference")
	}
	if refs.Version != "" {
		add(bootrecord.ReleaseMeasurement(refs.Version), "the release's reference")
	}
	if ev.Release.RootfsSHA256 != "" {
		add(bootrecord.RootfsMeasurement(ev.Release.RootfsSHA256), "the device's claim")
	}
	if ev.Release.Version != "" {
		add(bootrecord.ReleaseMeasurement(ev.Release.Version), "the device's claim")
	}
	return out
}

// divergence says which event of a log that does not replay PCR 15 does
// not reflect, trying what a failed, unlogged or repeated extend leaves:
// PCR 15 holds only the first events of the log, all but one, one of them
// twice, or the log with one expected extend (expectedEvents) inserted.
func divergence(events []plumbEvent, quoted []byte, expected []plumbEvent) string {
	n := len(events)
	for k := 0; k < n; k++ {
		if bytes.Equal(replayEvents(events[:k], -1, -1), quoted) {
			return fmt.Sprintf("PCR 15 holds the first %d of the log's %d extends: it diverges at %s, which PCR 15 does not hold", k, n, events[k])
		}
	}
	for j := range events {
		if bytes.Equal(replayEvents(events, j, -1), quoted) {
			return fmt.Sprintf("it diverges at %s: PCR 15 holds every other extend of the log but not this one", events[j])
		}
	}
	for j := range events {
		if bytes.Equal(replayEvents(events, -1, j), quoted) {
			return fmt.Sprintf("it diverges at %s: PCR 15 holds this extend twice, the log once", events[j])
		}
	}
	for _, x := range expected {
		for k := 0; k <= n; k++ {
			with := append(append(append([]plumbEvent(nil), events[:k]...), x), events[k:]...)
			if !bytes.Equal(replayEvents(with, -1, -1), quoted) {
				continue
			}
			at := "before plumb_log's first event"
			if k > 0 {
				at = "after " + events[k-1].String()
			}
			return fmt.Sprintf("it diverges %s: PCR 15 also holds %s, which the log does not list", at, x)
		}
	}
	if n == 0 {
		return "the log is empty but PCR 15 was extended"
	}
	return fmt.Sprintf("no prefix of the log replays to PCR 15, nor the log with one extend left out, repeated or added: PCR 15 does not start with %s, or holds an extend the log does not list", events[0])
}

func checkBootloader(ch *bootChain, refs References, why string) Check {
	c := Check{Name: CheckBootloader, Expected: refs.Bootloader}
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case refs.Bootloader == "":
		return c.notCheckableWhy("the release publishes no bootloader reference")
	case len(ch.apps) == 0:
		return c.fail("no EFI application measured into PCR 4", "")
	}
	c.Actual = ch.apps[0]
	c.Detail = "first EFI application in PCR 4 (PE/Authenticode sha256)"
	if c.Actual != refs.Bootloader {
		c.Status = StatusFailed
		return c
	}
	return c.pass()
}

func checkKernel(ch *bootChain, refs References, why string) Check {
	if len(refs.UKI) > 0 {
		return checkUKI(ch, refs, why)
	}
	c := Check{Name: CheckKernel, Expected: refs.Kernel}
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case refs.Kernel == "":
		return c.notCheckableWhy("the release publishes no kernel reference")
	case len(ch.apps) < 2:
		return c.fail("no second EFI application (the kernel) measured into PCR 4", "")
	}
	rest := ch.apps[1:]
	c.Actual = strings.Join(rest, ", ")
	c.Detail = "EFI applications after the bootloader in PCR 4 (PE/Authenticode sha256)"
	if len(rest) != 1 || rest[0] != refs.Kernel {
		c.Status = StatusFailed
		if len(rest) > 1 {
			c.Detail = "more than one EFI application ran after the bootloader: " + c.Detail
		}
		return c
	}
	return c.pass()
}

// checkUKI is the kernel check of a UKI boot: the EFI application after
// systemd-boot in PCR 4 is the signed UKI of one of the slots, followed by
// nothing or by the UKI's own kernel: systemd 252's stub starts the
// kernel through the firmware's LoadImage when the firmware lets it
// (Secure Boot off: a real log has the kernel's Authenticode digest
// there) and by the EFI handover otherwise (Secure Boot on: no event).
func checkUKI(ch *bootChain, refs References, why string) Check {
	slots := make([]string, 0, len(refs.UKI))
	for s := range refs.UKI {
		slots = append(slots, s)
	}
	sort.Strings(slots)
	var exp []string
	for _, s := range slots {
		exp = append(exp, "UKI of slot "+s+": "+refs.UKI[s])
	}
	c := Check{Name: CheckKernel, Expected: strings.Join(exp, " or ")}
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case len(ch.apps) < 2:
		return c.fail("no second EFI application (the UKI) measured into PCR 4", "")
	}
	rest := ch.apps[1:]
	c.Actual = strings.Join(rest, ", ")
	c.Detail = "EFI applications after the bootloader in PCR 4 (PE/Authenticode sha256 of the Unified Kernel Image: stub, kernel, initrd, command line)"
	if len(rest) == 2 && rest[1] == refs.Kernel {
		c.Detail += ", then its kernel, which the stub started through the firmware"
	} else if len(rest) != 1 {
		c.Status = StatusFailed
		c.Detail = "more EFI applications ran after the bootloader than the UKI and its kernel: " + c.Detail
		return c
	}
	for _, s := range slots {
		if rest[0] == refs.UKI[s] {
			c.Expected = "UKI of slot " + s + ": " + refs.UKI[s]
			if len(rest) == 2 {
				c.Expected += ", then its kernel: " + refs.Kernel
			}
			return c.pass()
		}
	}
	c.Status = StatusFailed
	return c
}

func checkInitrd(ch *bootChain, refs References, why string) Check {
	c := Check{Name: CheckInitrd, Expected: refs.Initrd}
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case refs.Initrd == "":
		return c.notCheckableWhy("the release publishes no initrd reference")
	case len(ch.initrd) == 0:
		return c.fail("no \"Linux initrd\" event in PCR 9", "")
	}
	c.Actual = strings.Join(ch.initrd, ", ")
	c.Detail = "the kernel EFI stub's \"Linux initrd\" event in PCR 9 (sha256 of the initrd)"
	if len(ch.initrd) != 1 || ch.initrd[0] != refs.Initrd {
		c.Status = StatusFailed
		return c
	}
	return c.pass()
}

func checkCmdline(ch *bootChain, refs References, why string) Check {
	if len(refs.UKI) > 0 {
		return checkUKICmdline(ch, refs, why)
	}
	c := Check{Name: CheckCmdline}
	var exp []string
	for _, s := range refs.slots() {
		exp = append(exp, "slot "+s+": "+quote(refs.Cmdline[s]))
	}
	c.Expected = strings.Join(exp, " or ")
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case len(refs.Cmdline) == 0:
		return c.notCheckableWhy("the release publishes no command line reference")
	case len(ch.cmdlines) == 0:
		return c.fail("no EV_IPL event in PCR 12", "systemd-boot measured no command line")
	}
	var got []string
	for _, e := range ch.cmdlines {
		text := quote(e.text)
		if !e.honest {
			text += " (event data does not match its digest " + e.digest + ")"
		}
		got = append(got, text)
	}
	c.Actual = strings.Join(got, ", ")
	c.Detail = "systemd-boot's EV_IPL events in PCR 12 (sha256 of the UTF-16LE command line)"
	if len(ch.cmdlines) != 1 {
		c.Status = StatusFailed
		c.Detail = "expected one command line in PCR 12; " + c.Detail
		return c
	}
	for _, s := range refs.slots() {
		if d := cmdlineDigests(refs.Cmdline[s]); ch.cmdlines[0].digest == d[0] || ch.cmdlines[0].digest == d[1] {
			c.Expected = "slot " + s + ": " + quote(refs.Cmdline[s])
			return c.pass()
		}
	}
	c.Status = StatusFailed
	return c
}

// checkUKICmdline is the command line check of a UKI boot: systemd's
// stub measures the UKI's .cmdline section (its bytes, as the builder
// wrote them) into PCR 11; the event holds only the section's name.
func checkUKICmdline(ch *bootChain, refs References, why string) Check {
	c := Check{Name: CheckCmdline}
	var exp []string
	sums := map[string]string{}
	for _, s := range refs.slots() {
		sum := sha256.Sum256([]byte(refs.Cmdline[s]))
		sums[s] = hex.EncodeToString(sum[:])
		exp = append(exp, "slot "+s+": "+quote(refs.Cmdline[s])+" (sha256 "+sums[s]+")")
	}
	c.Expected = strings.Join(exp, " or ")
	switch {
	case ch == nil:
		return c.notCheckableWhy(why)
	case len(refs.Cmdline) == 0:
		return c.notCheckableWhy("the release publishes no command line reference")
	}
	if e, ok := ukiOverride(ch); ok {
		c.Actual = quote(e.text)
		if !e.honest {
			c.Actual += " (event data does not match its digest " + e.digest + ")"
		}
		return c.fail(c.Actual, "the boot loader passed this command line (PCR 12) and systemd's stub used it instead of the signed .cmdline: Secure Boot is off")
	}
	got := ch.sections[".cmdline"]
	if len(got) == 0 {
		return c.fail("no .cmdline section in PCR 11", "systemd's stub measured no command line")
	}
	c.Actual = "sha256 " + strings.Join(got, ", ")
	c.Detail = "the UKI's .cmdline section systemd's stub measured into PCR 11 (sha256 of its bytes)"
	if len(got) != 1 {
		c.Status = StatusFailed
		c.Detail = "expected one .cmdline section in PCR 11; " + c.Detail
		return c
	}
	for _, s := range refs.slots() {
		if got[0] == sums[s] {
			c.Expected = "slot " + s + ": " + quote(refs.Cmdline[s]) + " (sha256 " + sums[s] + ")"
			c.Actual = quote(refs.Cmdline[s]) + " (sha256 " + got[0] + ")"
			return c.pass()
		}
	}
	c.Status = StatusFailed
	return c
}

func measurementsOf(ev *attestapi.Evidence, typ string) []bootrecord.Measurement {
	var out []bootrecord.Measurement
	for _, m := range ev.PlumbLog {
		if m.PCR == bootrecord.MeasurePCR && m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func checkRootfs(ev *attestapi.Evidence, logOK bool, refs References, why string) Check {
	c := Check{Name: CheckRootfs, Expected: refs.Rootfs}
	switch {
	case !logOK:
		return c.notCheckableWhy(why)
	case refs.Rootfs == "":
		return c.notCheckableWhy("the release publishes no rootfs digest")
	}
	ms := measurementsOf(ev, bootrecord.EventRootfs)
	if len(ms) != 1 {
		return c.fail(fmt.Sprintf("%d plumb.rootfs measurements", len(ms)), "expected exactly one measurement of the root image in PCR 15")
	}
	c.Actual = ms[0].SHA256
	c.Detail = "plumb-init's plumb.rootfs measurement in PCR 15 (sha256 of the slot's image)"
	if c.Actual != refs.Rootfs {
		c.Status = StatusFailed
		return c
	}
	return c.pass()
}

func checkRelease(ev *attestapi.Evidence, logOK bool, refs References, why string) Check {
	c := Check{Name: CheckRelease, Expected: refs.Version}
	switch {
	case !logOK:
		return c.notCheckableWhy(why)
	case refs.Version == "":
		return c.notCheckableWhy("no reference version")
	}
	ms := measurementsOf(ev, bootrecord.EventRelease)
	if len(ms) != 1 {
		return c.fail(fmt.Sprintf("%d plumb.release measurements", len(ms)), "expected exactly one measurement of the release version in PCR 15")
	}
	c.Actual = ms[0].Data
	c.Detail = "plumb-init's plumb.release measurement in PCR 15"
	if c.Actual != refs.Version {
		c.Status = StatusFailed
		return c
	}
	if ev.Release.Version != refs.Version {
		c.Status = StatusFailed
		c.Detail = fmt.Sprintf("the measured version matches but the evidence claims %q", ev.Release.Version)
		return c
	}
	return c.pass()
}

// quote puts s in double quotes, escaping only when it holds characters
// that are not printable (a command line keeps its backslashes readable).
func quote(s string) string {
	if strconv.CanBackquote(s) && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return strconv.Quote(s)
}

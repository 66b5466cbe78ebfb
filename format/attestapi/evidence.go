package attestapi

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"

	"github.com/plumb-os/plumb/format/bootrecord"
)

// QuotedPCRCount is how many PCRs a quote covers: 0-15.
const QuotedPCRCount = 16

// CheckDeviceID checks a device id's syntax: letters, digits, '.', '_',
// ':', '-', at most 128 bytes. The id names files on the verifier.
func CheckDeviceID(id string) error {
	if len(id) > maxDeviceIDLen || !deviceIDRE.MatchString(id) {
		return fmt.Errorf("expected letters, digits, '.', '_', ':', '-' (at most %d), got %s", maxDeviceIDLen, short(id))
	}
	return nil
}

// EvidenceVersion is the version of the evidence format (EVIDENCE.md).
const EvidenceVersion = 1

// Bounds on evidence fields. Evidence comes from devices that may be
// compromised: everything is bounded before it is decoded.
const (
	MaxEvidenceSize  = 2 << 20 // the whole JSON document
	MaxEventLogSize  = 1 << 20 // raw binary_bios_measurements
	MaxEKCertSize    = 8 << 10
	MaxPublicSize    = 2 << 10 // ak_public, ek_public
	MaxQuoteSize     = 2 << 10 // quote.attest, quote.signature
	MaxPlumbLogLen   = 64
	MaxMeasureData   = 1 << 10
	MinNonceSize     = 8
	MaxNonceSize     = 64
	maxDeviceIDLen   = 128
	sha256HexLen     = 64
	maxReleaseString = 256
)

// ErrMalformed marks evidence that cannot be decoded or breaks the format:
// callers map it to "bad input".
var ErrMalformed = errors.New("malformed evidence")

// Evidence is what a device sends to prove what it booted.
type Evidence struct {
	Version  int    `json:"version"`
	DeviceID string `json:"device_id"`
	// Nonce is the verifier's nonce the quote was made over.
	Nonce []byte `json:"nonce"`
	Quote Quote  `json:"quote"`
	// PCRs are the sha256 bank values of PCRs 0-15 when the quote was
	// made, keyed by the decimal PCR index.
	PCRs map[int][]byte `json:"pcrs"`
	// AKPublic is the attestation key's TPM2B_PUBLIC contents (a TPMT_PUBLIC).
	AKPublic []byte `json:"ak_public"`
	// EKPublic is the endorsement key's public key, PKIX DER.
	EKPublic []byte `json:"ek_public"`
	// EKCertificate is the EK certificate read from the TPM's NV, DER; nil
	// when the TPM has none.
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	// EventLog is the raw UEFI event log (binary_bios_measurements); nil
	// when the kernel exposes none.
	EventLog []byte `json:"event_log,omitempty"`
	// PlumbLog lists plumb-init's extends of PCR 15, in order.
	PlumbLog []bootrecord.Measurement `json:"plumb_log"`
	Release  Release                  `json:"release"`
}

// Quote is a TPM2_Quote's output.
type Quote struct {
	Attest    []byte `json:"attest"`    // TPMS_ATTEST (TPM2B_ATTEST contents)
	Signature []byte `json:"signature"` // TPMT_SIGNATURE
}

// Release is what the device claims to run.
type Release struct {
	Version      string `json:"version"`
	Hardware     string `json:"hardware"`
	RootfsSHA256 string `json:"rootfs_sha256,omitempty"`
}

// wireEvidence is the JSON shape: binary fields as base64 or hex strings,
// decoded one by one so an error names its field.
type wireEvidence struct {
	Version       int                        `json:"version"`
	DeviceID      string                     `json:"device_id"`
	Nonce         string                     `json:"nonce"`
	Quote         wireQuote                  `json:"quote"`
	PCRs          map[string]json.RawMessage `json:"pcrs"`
	AKPublic      string                     `json:"ak_public"`
	EKPublic      string                     `json:"ek_public"`
	EKCertificate string                     `json:"ek_certificate,omitempty"`
	EventLog      string                     `json:"event_log,omitempty"`
	PlumbLog      []bootrecord.Measurement   `json:"plumb_log"`
	Release       Release                    `json:"release"`
}

type wireQuote struct {
	Attest    string `json:"attest"`
	Signature string `json:"signature"`
}

var (
	deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	hexRE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// MarshalJSON encodes the evidence in its wire format.
func (e Evidence) MarshalJSON() ([]byte, error) {
	w := wireEvidence{
		Version:       e.Version,
		DeviceID:      e.DeviceID,
		Nonce:         b64(e.Nonce),
		Quote:         wireQuote{Attest: b64(e.Quote.Attest), Signature: b64(e.Quote.Signature)},
		PCRs:          make(map[string]json.RawMessage, len(e.PCRs)),
		AKPublic:      b64(e.AKPublic),
		EKPublic:      b64(e.EKPublic),
		EKCertificate: b64(e.EKCertificate),
		EventLog:      b64(e.EventLog),
		PlumbLog:      e.PlumbLog,
		Release:       e.Release,
	}
	if w.PlumbLog == nil {
		w.PlumbLog = []bootrecord.Measurement{}
	}
	for i, v := range e.PCRs {
		w.PCRs[strconv.Itoa(i)] = json.RawMessage(strconv.Quote(hex.EncodeToString(v)))
	}
	return json.Marshal(w)
}

func b64(b []byte) string {
	if b == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// UnmarshalJSON decodes and validates evidence (see ParseEvidence).
func (e *Evidence) UnmarshalJSON(b []byte) error {
	ev, err := ParseEvidence(bytes.NewReader(b))
	if err != nil {
		return err
	}
	*e = *ev
	return nil
}

// ParseEvidence reads one evidence document from r (at most
// MaxEvidenceSize bytes) and checks its shape: field types, sizes, PCRs
// 0-15 present. It does not verify anything cryptographic (Verifier.Verify
// does). Every error is one line naming the field, wraps ErrMalformed, and
// no input makes it panic.
func ParseEvidence(r io.Reader) (*Evidence, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxEvidenceSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading evidence: %w", err)
	}
	if len(data) > MaxEvidenceSize {
		return nil, malformed("", "expected at most %d bytes of JSON, got more", MaxEvidenceSize)
	}
	var w wireEvidence
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return nil, jsonError(data, err)
	}
	if dec.More() {
		return nil, malformed("", "expected one JSON object, got more after it")
	}
	return w.decode()
}

func (w *wireEvidence) decode() (*Evidence, error) {
	e := &Evidence{Version: w.Version, DeviceID: w.DeviceID, PlumbLog: w.PlumbLog, Release: w.Release}
	if w.Version != EvidenceVersion {
		return nil, malformed("version", "expected %d, got %d", EvidenceVersion, w.Version)
	}
	if len(w.DeviceID) > maxDeviceIDLen || !deviceIDRE.MatchString(w.DeviceID) {
		return nil, malformed("device_id", "expected a device id of letters, digits, '.', '_', ':', '-' (at most %d), got %s", maxDeviceIDLen, short(w.DeviceID))
	}
	var err error
	fields := []struct {
		name     string
		in       string
		out      *[]byte
		min, max int
	}{
		{"nonce", w.Nonce, &e.Nonce, MinNonceSize, MaxNonceSize},
		{"quote.attest", w.Quote.Attest, &e.Quote.Attest, 1, MaxQuoteSize},
		{"quote.signature", w.Quote.Signature, &e.Quote.Signature, 1, MaxQuoteSize},
		{"ak_public", w.AKPublic, &e.AKPublic, 1, MaxPublicSize},
		{"ek_public", w.EKPublic, &e.EKPublic, 1, MaxPublicSize},
		{"ek_certificate", w.EKCertificate, &e.EKCertificate, 0, MaxEKCertSize},
		{"event_log", w.EventLog, &e.EventLog, 0, MaxEventLogSize},
	}
	for _, f := range fields {
		if *f.out, err = decodeB64(f.name, f.in, f.min, f.max); err != nil {
			return nil, err
		}
	}
	if len(w.PCRs) != QuotedPCRCount {
		return nil, malformed("pcrs", "expected the sha256 values of PCRs 0-15 (16 entries), got %d entries", len(w.PCRs))
	}
	e.PCRs = make(map[int][]byte, QuotedPCRCount)
	for i := range QuotedPCRCount {
		k := strconv.Itoa(i)
		raw, ok := w.PCRs[k]
		if !ok {
			return nil, malformed("pcrs", "expected PCRs 0-15, missing %q", k)
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, malformed("pcrs."+k, "expected a string of 64 hex digits, got JSON %s", short(string(raw)))
		}
		if !hexRE.MatchString(v) {
			return nil, malformed("pcrs."+k, "expected 64 lower-case hex digits, got %s", short(v))
		}
		e.PCRs[i], _ = hex.DecodeString(v)
	}
	if len(w.PlumbLog) > MaxPlumbLogLen {
		return nil, malformed("plumb_log", "expected at most %d measurements, got %d", MaxPlumbLogLen, len(w.PlumbLog))
	}
	for i, m := range w.PlumbLog {
		f := fmt.Sprintf("plumb_log[%d]", i)
		if m.PCR < 0 || m.PCR > 23 {
			return nil, malformed(f+".pcr", "expected 0..23, got %d", m.PCR)
		}
		if !hexRE.MatchString(m.SHA256) {
			return nil, malformed(f+".sha256", "expected 64 lower-case hex digits, got %s", short(m.SHA256))
		}
		if len(m.Type) == 0 || len(m.Type) > 64 {
			return nil, malformed(f+".type", "expected an event type like %q, got %s", bootrecord.EventRootfs, short(m.Type))
		}
		if len(m.Data) > MaxMeasureData {
			return nil, malformed(f+".data", "expected at most %d bytes, got %d", MaxMeasureData, len(m.Data))
		}
	}
	for _, s := range []struct{ name, v string }{
		{"release.version", w.Release.Version}, {"release.hardware", w.Release.Hardware},
	} {
		if s.v == "" || len(s.v) > maxReleaseString {
			return nil, malformed(s.name, "expected a string of 1..%d bytes, got %s", maxReleaseString, short(s.v))
		}
	}
	if r := w.Release.RootfsSHA256; r != "" && !hexRE.MatchString(r) {
		return nil, malformed("release.rootfs_sha256", "expected 64 lower-case hex digits, got %s", short(r))
	}
	return e, nil
}

func decodeB64(field, s string, minLen, maxLen int) ([]byte, error) {
	if s == "" {
		if minLen > 0 {
			return nil, malformed(field, "expected base64 of %d..%d bytes, got nothing", minLen, maxLen)
		}
		return nil, nil
	}
	if base64.StdEncoding.DecodedLen(len(s)) > maxLen+3 {
		return nil, malformed(field, "expected at most %d bytes, got about %d", maxLen, base64.StdEncoding.DecodedLen(len(s)))
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, malformed(field, "expected standard base64, got %s (%v)", short(s), err)
	}
	if len(b) < minLen || len(b) > maxLen {
		return nil, malformed(field, "expected %d..%d bytes, got %d", minLen, maxLen, len(b))
	}
	return b, nil
}

// jsonError turns a decoder error into one line naming the line or field.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return malformed("", "line %d: expected JSON, got a syntax error: %v", lineOf(data, syn.Offset), syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(document)"
		}
		return malformed(field, "expected %s, got JSON %s (line %d)", jsonKind(typ.Type), typ.Value, lineOf(data, typ.Offset))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("", "expected a JSON object, got %s", truncatedOrEmpty(data))
	default:
		return malformed("", "expected a JSON object: %v", err)
	}
}

// jsonKind names a Go type the way the JSON document spells it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	}
	return t.String()
}

func truncatedOrEmpty(data []byte) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "nothing"
	}
	return "a truncated document"
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

type malformedError struct{ msg string }

func (m *malformedError) Error() string   { return m.msg }
func (m *malformedError) Is(t error) bool { return t == ErrMalformed }

func malformed(field, format string, args ...any) error {
	prefix := "evidence: "
	if field != "" {
		prefix += field + ": "
	}
	return &malformedError{msg: prefix + fmt.Sprintf(format, args...)}
}

// short quotes s, cut to 40 bytes, for error messages.
func short(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "..."
	}
	return strconv.Quote(s)
}

// EnrollRequest is what a device sends to be enrolled: its EK (public key
// and certificate) and the AK to bind to it.
type EnrollRequest struct {
	DeviceID      string `json:"device_id"`
	EKPublic      []byte `json:"ek_public"`                // PKIX DER
	EKCertificate []byte `json:"ek_certificate,omitempty"` // DER
	AKPublic      []byte `json:"ak_public"`                // TPMT_PUBLIC
}

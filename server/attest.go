package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/server/store"
)

// AttestOptions turn on the verifier endpoints (/v1/attest/..., see
// server/attestapi): the device asks for a nonce, enrolls its AK by
// credential activation, and posts evidence; the server answers with a
// report (attest.Verifier) and keeps it in the device's history. Every
// call is a device write, authenticated like a status report (fleet.go);
// the endpoints need the fleet service.
type AttestOptions struct {
	// ManufacturerCAs are the roots and intermediates EK certificates must
	// chain to (swtpm's local CA in tests); nil: the ek_certificate check
	// is "not checkable".
	ManufacturerCAs *x509.CertPool
	// NonceTTL is how long a nonce or a challenge stays valid; default 5m.
	NonceTTL time.Duration
}

// Caps on the outstanding nonces and challenges, per device and in all,
// kept in the fleet database (store.AddNonce, store.PutChallenge) so that
// every server sharing it knows them. A device's new nonce past its cap
// drops its oldest; past the global cap new ones are refused with 503
// until some expire or are used. Only members of an organization get
// any, so one client cannot lock other devices out.
const (
	maxPending          = 10000
	maxNoncesPerDevice  = 4
	maxEnrollsPerDevice = 1
)

// verifier is the state of the attestation endpoints: its options; the
// outstanding nonces and challenges are in the database.
type verifier struct {
	o       AttestOptions
	v       *attest.Verifier
	fleet   *fleet
	repoDir string // the TUF repository directory (Options.Dir)
	max     int    // cap on outstanding nonces, and on challenges: maxPending
}

// pendingEnroll is an outstanding enrollment challenge as the database
// keeps it (JSON).
type pendingEnroll struct {
	Challenge *attest.Challenge `json:"challenge"`
}

// dbEnrollments reads enrollments from the fleet database.
type dbEnrollments struct{ db *store.Store }

func (s dbEnrollments) Lookup(id string) (*attest.Enrollment, error) {
	d, err := s.db.Device(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(d.AKPublic) == 0) {
		return nil, fmt.Errorf("device %s: %w", id, attest.ErrNotEnrolled)
	}
	if err != nil {
		return nil, err
	}
	return &attest.Enrollment{DeviceID: id, EKPublic: d.EKPublic, AKPublic: d.AKPublic, Enrolled: d.Enrolled}, nil
}

func newVerifier(repoDir string, o AttestOptions, f *fleet) (*verifier, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: the attestation endpoints need the fleet service (Options.Fleet)", ErrBadInput)
	}
	if o.NonceTTL <= 0 {
		o.NonceTTL = 5 * time.Minute
	}
	v := attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: o.ManufacturerCAs, Enrolled: dbEnrollments{f.db}})
	return &verifier{o: o, v: v, fleet: f, repoDir: repoDir, max: maxPending}, nil
}

// route answers the attestation endpoints; false: not one of them.
func (v *verifier) route(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/" + attestapi.PathNonce:
		v.method(w, r, http.MethodGet, v.nonce)
	case "/" + attestapi.PathEnroll:
		v.method(w, r, http.MethodPost, v.enroll)
	case "/" + attestapi.PathActivate:
		v.method(w, r, http.MethodPost, v.activate)
	case "/" + attestapi.PathEvidence:
		v.method(w, r, http.MethodPost, v.evidence)
	default:
		return false
	}
	return true
}

func (v *verifier) method(w http.ResponseWriter, r *http.Request, m string, h func(*http.Request) (any, error)) {
	if r.Method != m {
		w.Header().Set("Allow", m)
		problem(w, http.StatusMethodNotAllowed, "method %s not allowed: expected %s", r.Method, m)
		return
	}
	out, err := h(r)
	if err != nil {
		v.fleet.fail(w, r, err)
		return
	}
	if raw, ok := out.([]byte); ok {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(raw)
		return
	}
	reply(w, out)
}

// problem writes one error line as attestapi.Problem.
func problem(w http.ResponseWriter, code int, format string, args ...any) {
	problemCode(w, code, "", format, args...)
}

func problemCode(w http.ResponseWriter, code int, short, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(attestapi.Problem{Error: fmt.Sprintf(format, args...), Code: short})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func checkID(id string) error {
	if !deviceIDRE.MatchString(id) {
		return errorf(http.StatusBadRequest, "device: expected 1-64 of a-z 0-9 -, got %q", truncate(id, 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// readJSON decodes a bounded request body strictly.
func readJSON(r *http.Request, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the request: %v", err)
	}
	if int64(len(b)) > limit {
		return errorf(http.StatusRequestEntityTooLarge, "request body: expected at most %d bytes", limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	return nil
}

// errNotEnrolled tells the device to enroll (again): the server has no
// enrollment for it, or lost it.
func errNotEnrolled(id string) error {
	return &codedError{httpError: httpError{code: http.StatusConflict, msg: fmt.Sprintf("device %s has no enrolled attestation key: enroll first", id)}, short: attestapi.CodeNotEnrolled}
}

// codedError is an httpError with a short machine-readable code.
type codedError struct {
	httpError
	short string
}

func (v *verifier) nonce(r *http.Request) (any, error) {
	id := r.URL.Query().Get("device")
	if err := checkID(id); err != nil {
		return nil, err
	}
	d, err := v.fleet.authDevice(r, id)
	if err != nil {
		return nil, err
	}
	if len(d.AKPublic) == 0 {
		return nil, errNotEnrolled(id)
	}
	n := make([]byte, 32)
	rand.Read(n)
	now := time.Now()
	expires := now.Add(v.o.NonceTTL)
	// The device's oldest goes past maxNoncesPerDevice.
	err = v.fleet.db.AddNonce(r.Context(), id, n, now, expires, maxNoncesPerDevice, v.max)
	if errors.Is(err, store.ErrFull) {
		return nil, errorf(http.StatusServiceUnavailable, "too many outstanding nonces (%d): try again later", v.max)
	}
	if err != nil {
		return nil, err
	}
	return attestapi.Nonce{Nonce: n, Expires: expires.UTC()}, nil
}

func (v *verifier) enroll(r *http.Request) (any, error) {
	var req attestapi.EnrollRequest
	if err := readJSON(r, attestapi.MaxBody, &req); err != nil {
		return nil, err
	}
	if err := checkID(req.DeviceID); err != nil {
		return nil, err
	}
	joinOrg := ""
	d, err := v.fleet.authDevice(r, req.DeviceID)
	if errors.Is(err, errNotMember) {
		// Not a member: its EK certificate may be its join credential,
		// once credential activation proves the EK is its TPM's.
		org, oerr := v.fleet.ekOrg(r.Context(), req.EKCertificate, req.EKPublic)
		if oerr != nil {
			return nil, oerr
		}
		if org == "" {
			return nil, err
		}
		joinOrg, d, err = org, &store.Device{ID: req.DeviceID}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(d.EKPublic) > 0 && !bytes.Equal(d.EKPublic, req.EKPublic) {
		return nil, errorf(http.StatusForbidden, "enroll: device %s is bound to another TPM (EK): only an operator can rebind it", d.ID)
	}
	ch, err := v.v.Challenge(req.DeviceID, req.EKPublic, req.AKPublic)
	if err != nil {
		return nil, errorf(http.StatusForbidden, "enroll: %v", err)
	}
	doc, err := json.Marshal(pendingEnroll{Challenge: ch})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// maxEnrollsPerDevice: the new one replaces the device's last.
	err = v.fleet.db.PutChallenge(r.Context(), req.DeviceID, string(doc), joinOrg, now, now.Add(v.o.NonceTTL), v.max)
	if errors.Is(err, store.ErrFull) {
		return nil, errorf(http.StatusServiceUnavailable, "too many outstanding enrollments (%d): try again later", v.max)
	}
	if err != nil {
		return nil, err
	}
	return attestapi.Challenge{Credential: ch.CredBlob, Secret: ch.EncSecret}, nil
}

func (v *verifier) activate(r *http.Request) (any, error) {
	var a attestapi.Activation
	if err := readJSON(r, attestapi.MaxBody, &a); err != nil {
		return nil, err
	}
	if err := checkID(a.DeviceID); err != nil {
		return nil, err
	}
	if _, err := peerKey(r, a.DeviceID); err != nil {
		return nil, err
	}
	// One answer per challenge: taking it removes it.
	doc, joinOrg, err := v.fleet.db.TakeChallenge(r.Context(), a.DeviceID, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusForbidden, "activate: device %s has no outstanding challenge: enroll first", a.DeviceID)
	}
	if err != nil {
		return nil, err
	}
	var p pendingEnroll
	if err := json.Unmarshal([]byte(doc), &p); err != nil || p.Challenge == nil {
		return nil, fmt.Errorf("activate: device %s: the stored challenge is unreadable: %v", a.DeviceID, err)
	}
	if joinOrg == "" {
		if _, err := v.fleet.authDevice(r, a.DeviceID); err != nil {
			return nil, err
		}
	}
	e, err := v.v.ConfirmBinding(p.Challenge, a.Secret)
	if err != nil {
		return nil, errorf(http.StatusForbidden, "activate: device %s: %v: the AK is not in the TPM that holds the EK", a.DeviceID, err)
	}
	if joinOrg != "" {
		if err := v.fleet.joinByEK(r, a.DeviceID, joinOrg); err != nil {
			return nil, err
		}
	}
	ctx := r.Context()
	if err := v.fleet.db.SaveEnrollment(ctx, e.DeviceID, e.EKPublic, e.AKPublic, e.Enrolled); err != nil {
		return nil, err
	}
	v.fleet.db.AddEvents(ctx, e.DeviceID, store.Event{At: time.Now().UTC(), Kind: store.EventAttestation, Summary: "attestation key enrolled"})
	return attestapi.Activated{DeviceID: e.DeviceID, Enrolled: e.Enrolled}, nil
}

// references returns the reference values of the release the evidence
// claims, from the repository's current signed targets; zero if none.
func (v *verifier) references(rel attestapi.Release) (attest.References, error) {
	repo, err := tufrepo.Open(v.repoDir, tufrepo.Options{})
	if err != nil {
		return attest.References{}, err
	}
	rs, err := repo.Releases()
	if err != nil {
		return attest.References{}, err
	}
	want := release.TargetPath(rel.Hardware, rel.Version)
	for _, r := range rs {
		if r.Path == want {
			custom, err := json.Marshal(r.Facts)
			if err != nil {
				return attest.References{}, err
			}
			return attest.ReferencesFromFacts(custom)
		}
	}
	return attest.References{}, nil
}

func (v *verifier) evidence(r *http.Request) (any, error) {
	ev, err := attestapi.ParseEvidence(io.LimitReader(r.Body, attestapi.MaxEvidenceSize+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	d, err := v.fleet.authDevice(r, ev.DeviceID)
	if err != nil {
		return nil, err
	}
	if len(d.AKPublic) == 0 {
		return nil, errNotEnrolled(d.ID)
	}
	// A nonce is good for one evidence: taking it removes it.
	ok, err := v.fleet.db.TakeNonce(r.Context(), ev.DeviceID, ev.Nonce, time.Now())
	if err != nil {
		return nil, err
	}
	nonce := ev.Nonce
	if !ok {
		return nil, errorf(http.StatusBadRequest, "evidence: device %s has no outstanding nonce matching the evidence: get one from /%s first", ev.DeviceID, attestapi.PathNonce)
	}
	refs, err := v.references(ev.Release)
	if err != nil {
		return nil, fmt.Errorf("evidence: reference values: %w", err)
	}
	report := v.v.Verify(ev, nonce, refs)
	var js bytes.Buffer
	if err := report.WriteJSON(&js); err != nil {
		return nil, err
	}
	var failed []string
	for _, c := range report.Checks {
		if c.Status == attest.StatusFailed {
			failed = append(failed, c.Name)
		}
	}
	summary := "attestation " + report.Verdict
	if len(failed) > 0 {
		summary += ": " + strings.Join(failed, ", ")
	}
	if err := v.fleet.db.RecordAttestation(r.Context(), ev.DeviceID, ev.Release.Version, report.Verdict, summary, js.Bytes(), time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("evidence: keeping the report: %w", err)
	}
	return js.Bytes(), nil
}

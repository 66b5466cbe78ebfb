package server

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// AttestOptions turn on the verifier endpoints (/v1/attest/..., see
// server/attestapi): the device asks for a nonce, enrolls its AK once by
// credential activation, and posts evidence; the server answers with a
// report (attest.Verifier) and keeps it per device.
type AttestOptions struct {
	// ManufacturerCAs are the roots and intermediates EK certificates must
	// chain to (swtpm's local CA in tests); nil: the ek_certificate check
	// is "not checkable".
	ManufacturerCAs *x509.CertPool
	// Dir keeps enrollments (enrolled/<device>.json) and reports
	// (reports/<device>/<time>.json and .md, latest.json); default
	// Options.Dir/attest.
	Dir string
	// NonceTTL is how long a nonce or a challenge stays valid; default 5m.
	NonceTTL time.Duration
}

// maxPending bounds the nonces and challenges kept in memory.
const maxPending = 10000

// verifier is the state of the attestation endpoints.
type verifier struct {
	o        AttestOptions
	v        *attest.Verifier
	enrolled *attest.DirStore
	repoDir  string // the TUF repository directory (Options.Dir)
	mu       sync.Mutex
	nonces   map[string]pendingNonce
	enrolls  map[string]pendingEnroll
	reportMu sync.Mutex
}

type pendingNonce struct {
	nonce   []byte
	expires time.Time
}

type pendingEnroll struct {
	ch      *attest.Challenge
	expires time.Time
}

func newVerifier(repoDir string, o AttestOptions) (*verifier, error) {
	if o.Dir == "" {
		o.Dir = filepath.Join(repoDir, "attest")
	}
	if o.NonceTTL <= 0 {
		o.NonceTTL = 5 * time.Minute
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("attestation directory: %w", err)
	}
	store := &attest.DirStore{Dir: filepath.Join(o.Dir, "enrolled")}
	v := attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: o.ManufacturerCAs, Enrolled: store})
	return &verifier{o: o, v: v, enrolled: store, repoDir: repoDir, nonces: map[string]pendingNonce{}, enrolls: map[string]pendingEnroll{}}, nil
}

// route answers the attestation endpoints; false: not one of them.
func (v *verifier) route(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == "/"+attestapi.PathNonce:
		v.method(w, r, http.MethodGet, v.nonce)
	case p == "/"+attestapi.PathEnroll:
		v.method(w, r, http.MethodPost, v.enroll)
	case p == "/"+attestapi.PathActivate:
		v.method(w, r, http.MethodPost, v.activate)
	case p == "/"+attestapi.PathEvidence:
		v.method(w, r, http.MethodPost, v.evidence)
	case strings.HasPrefix(p, "/"+attestapi.PathDevices) && strings.HasSuffix(p, "/attestation"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/"+attestapi.PathDevices), "/attestation")
		v.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { v.latest(w, r, id) })
	default:
		return false
	}
	return true
}

func (v *verifier) method(w http.ResponseWriter, r *http.Request, m string, h http.HandlerFunc) {
	if r.Method != m {
		w.Header().Set("Allow", m)
		problem(w, http.StatusMethodNotAllowed, "method %s not allowed: expected %s", r.Method, m)
		return
	}
	h(w, r)
}

func problem(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(attestapi.Problem{Error: fmt.Sprintf(format, args...)})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func checkID(id string) error {
	if !deviceIDRE.MatchString(id) {
		return fmt.Errorf("device: expected 1..128 letters, digits, '.', '_', ':', '-', got %q", truncate(id, 40))
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
		return fmt.Errorf("reading the request: %w", err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("request body: expected at most %d bytes", limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// prune drops expired entries; the caller holds v.mu.
func (v *verifier) prune(now time.Time) {
	for k, n := range v.nonces {
		if now.After(n.expires) {
			delete(v.nonces, k)
		}
	}
	for k, e := range v.enrolls {
		if now.After(e.expires) {
			delete(v.enrolls, k)
		}
	}
}

func (v *verifier) nonce(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("device")
	if err := checkID(id); err != nil {
		problem(w, http.StatusBadRequest, "%v", err)
		return
	}
	n := make([]byte, 32)
	rand.Read(n)
	now := time.Now()
	v.mu.Lock()
	v.prune(now)
	if len(v.nonces) >= maxPending {
		v.mu.Unlock()
		problem(w, http.StatusServiceUnavailable, "too many outstanding nonces: try again later")
		return
	}
	pn := pendingNonce{nonce: n, expires: now.Add(v.o.NonceTTL)}
	v.nonces[id] = pn // a new nonce replaces the device's previous one
	v.mu.Unlock()
	reply(w, attestapi.Nonce{Nonce: n, Expires: pn.expires.UTC()})
}

func (v *verifier) enroll(w http.ResponseWriter, r *http.Request) {
	var req attestapi.EnrollRequest
	if err := readJSON(r, attestapi.MaxBody, &req); err != nil {
		problem(w, http.StatusBadRequest, "enroll: %v", err)
		return
	}
	if err := checkID(req.DeviceID); err != nil {
		problem(w, http.StatusBadRequest, "enroll: %v", err)
		return
	}
	ch, err := v.v.Challenge(req.DeviceID, req.EKPublic, req.AKPublic)
	if err != nil {
		problem(w, http.StatusForbidden, "enroll: %v", err)
		return
	}
	now := time.Now()
	v.mu.Lock()
	v.prune(now)
	if len(v.enrolls) >= maxPending {
		v.mu.Unlock()
		problem(w, http.StatusServiceUnavailable, "too many outstanding enrollments: try again later")
		return
	}
	v.enrolls[req.DeviceID] = pendingEnroll{ch: ch, expires: now.Add(v.o.NonceTTL)}
	v.mu.Unlock()
	reply(w, attestapi.Challenge{Credential: ch.CredBlob, Secret: ch.EncSecret})
}

func (v *verifier) activate(w http.ResponseWriter, r *http.Request) {
	var a attestapi.Activation
	if err := readJSON(r, attestapi.MaxBody, &a); err != nil {
		problem(w, http.StatusBadRequest, "activate: %v", err)
		return
	}
	if err := checkID(a.DeviceID); err != nil {
		problem(w, http.StatusBadRequest, "activate: %v", err)
		return
	}
	v.mu.Lock()
	p, ok := v.enrolls[a.DeviceID]
	delete(v.enrolls, a.DeviceID) // one answer per challenge
	v.mu.Unlock()
	if !ok || time.Now().After(p.expires) {
		problem(w, http.StatusForbidden, "activate: device %s has no outstanding challenge: enroll first", a.DeviceID)
		return
	}
	e, err := v.v.ConfirmBinding(p.ch, a.Secret)
	if err != nil {
		problem(w, http.StatusForbidden, "activate: device %s: %v: the AK is not in the TPM that holds the EK", a.DeviceID, err)
		return
	}
	if err := v.enrolled.Save(e); err != nil {
		problem(w, http.StatusInternalServerError, "activate: %v", err)
		return
	}
	reply(w, attestapi.Activated{DeviceID: e.DeviceID, Enrolled: e.Enrolled})
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

func (v *verifier) evidence(w http.ResponseWriter, r *http.Request) {
	ev, err := attestapi.ParseEvidence(http.MaxBytesReader(w, r.Body, attestapi.MaxEvidenceSize))
	if err != nil {
		problem(w, http.StatusBadRequest, "%v", err)
		return
	}
	v.mu.Lock()
	pn, ok := v.nonces[ev.DeviceID]
	delete(v.nonces, ev.DeviceID) // a nonce is good for one evidence
	v.mu.Unlock()
	if !ok || time.Now().After(pn.expires) {
		problem(w, http.StatusBadRequest, "evidence: device %s has no outstanding nonce: get one from /%s first", ev.DeviceID, attestapi.PathNonce)
		return
	}
	refs, err := v.references(ev.Release)
	if err != nil {
		problem(w, http.StatusInternalServerError, "evidence: reference values: %v", err)
		return
	}
	report := v.v.Verify(ev, pn.nonce, refs)
	var js, md bytes.Buffer
	if err := report.WriteJSON(&js); err != nil {
		problem(w, http.StatusInternalServerError, "evidence: %v", err)
		return
	}
	report.WriteMarkdown(&md)
	if err := v.saveReport(ev.DeviceID, js.Bytes(), md.Bytes()); err != nil {
		problem(w, http.StatusInternalServerError, "evidence: keeping the report: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(js.Bytes())
}

// saveReport keeps a report as reports/<device>/<time>.{json,md} and
// latest.json, each written atomically.
func (v *verifier) saveReport(id string, js, md []byte) error {
	dir := filepath.Join(v.o.Dir, "reports", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	v.reportMu.Lock()
	defer v.reportMu.Unlock()
	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := atomicfile.WriteFile(filepath.Join(dir, stamp+".json"), js, 0o644); err != nil {
		return err
	}
	if len(md) > 0 {
		if err := atomicfile.WriteFile(filepath.Join(dir, stamp+".md"), md, 0o644); err != nil {
			return err
		}
	}
	return atomicfile.WriteFile(filepath.Join(dir, "latest.json"), js, 0o644)
}

func (v *verifier) latest(w http.ResponseWriter, r *http.Request, id string) {
	if err := checkID(id); err != nil {
		problem(w, http.StatusBadRequest, "%v", err)
		return
	}
	b, err := os.ReadFile(filepath.Join(v.o.Dir, "reports", id, "latest.json"))
	if errors.Is(err, os.ErrNotExist) {
		problem(w, http.StatusNotFound, "device %s has no attestation report", id)
		return
	}
	if err != nil {
		problem(w, http.StatusInternalServerError, "reading the report: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/server/store"
)

// FleetOptions turn on the fleet service: device authentication, status
// reports and history in a database, organizations, operators and the
// operator API (api.go). See docs/fleet.md.
type FleetOptions struct {
	// DB is the database: a file path (SQLite) or a postgres:// URL.
	// Default Options.Dir/fleet.db.
	DB string
	// MaxEvents bounds each device's history (default
	// store.DefaultMaxEvents); Retention drops entries older than it
	// (0: kept until MaxEvents pushes them out).
	MaxEvents int64
	Retention time.Duration
	// MaxPending caps the refused devices listed to operators (default
	// 10,000); PendingRate caps how many new ones are listed per second
	// (default 5, bursts of 50). Past either, unknown devices are refused
	// with 429 and not listed.
	MaxPending  int64
	PendingRate float64
	// JoinRate caps the devices joining one organization per second
	// (default 20, bursts of 200).
	JoinRate float64
	// SilentAfter is how long a device may go without reporting before
	// the page lists it as silent (default DefaultSilentAfter: three
	// 5-minute polls).
	SilentAfter time.Duration
	// RolloutOrg is the organization whose operators and admins may
	// pause, resume, halt and set the waves of the repository's releases
	// from the page (default DefaultRolloutOrg, "default"): a release is
	// served to every organization's devices.
	RolloutOrg string
	// Bootstrap makes, when the database has no organization, the
	// organization "default", a join token written to
	// Options.Dir/join-token and its admin BootstrapAdmin with a random
	// password written to Options.Dir/admin-password: `plumb serve DIR`
	// works with no set-up, page included.
	Bootstrap bool
}

// maxReportSize bounds a status report's body.
const maxReportSize = deviceapi.MaxReport

// deviceIDRE is what a device id may look like (identity.IDOf makes 16
// base32 characters).
var deviceIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// JoinTokenFile is where Bootstrap writes the default organization's join
// token, relative to the serve directory.
const JoinTokenFile = "join-token"

// AdminPasswordFile is where Bootstrap writes the password of the default
// organization's first operator, BootstrapAdmin, relative to the serve
// directory (0600). Change it, or delete the file, once read.
const AdminPasswordFile = "admin-password"

// BootstrapAdmin is the user Bootstrap makes an admin of "default".
const BootstrapAdmin = "admin"

// JoinTokenHeader carries a device's join token (report.JoinTokenHeader).
const JoinTokenHeader = deviceapi.JoinTokenHeader

// fleet is the fleet service's state: everything lasting is in the
// database; the rate limiters are per process.
type fleet struct {
	o     FleetOptions
	db    *store.Store
	log   *slog.Logger
	repo  string // the serve directory
	wake  *wakeHub
	mu    sync.Mutex
	joins map[string]*rate.Limiter // per organization
	newID *rate.Limiter            // refused unknown devices listed
	// apiFails limits failed operator logins per process (api.go).
	logins *rate.Limiter
}

func newFleet(ctx context.Context, dir string, o FleetOptions, log *slog.Logger) (*fleet, error) {
	if o.DB == "" {
		o.DB = filepath.Join(dir, "fleet.db")
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	if o.PendingRate <= 0 {
		o.PendingRate = 5
	}
	if o.JoinRate <= 0 {
		o.JoinRate = 20
	}
	db, err := store.Open(ctx, o.DB, store.Options{MaxEvents: o.MaxEvents})
	if err != nil {
		return nil, err
	}
	f := &fleet{o: o, db: db, log: log, repo: dir, joins: map[string]*rate.Limiter{},
		newID: rate.NewLimiter(rate.Limit(o.PendingRate), int(o.PendingRate*10)), logins: rate.NewLimiter(5, 20)}
	if o.Bootstrap {
		if err := f.bootstrap(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return f, nil
}

// bootstrap makes the default organization and its join token when there
// is no organization yet.
func (f *fleet) bootstrap(ctx context.Context) error {
	orgs, err := f.db.Orgs(ctx)
	if err != nil || len(orgs) > 0 {
		return err
	}
	org, err := f.db.CreateOrg(ctx, "default", 0)
	if errors.Is(err, store.ErrExists) {
		return nil // another process sharing the database made it
	}
	if err != nil {
		return err
	}
	tok, err := f.db.CreateJoinToken(ctx, org.ID, "bootstrap")
	if err != nil {
		return err
	}
	p := filepath.Join(f.repo, JoinTokenFile)
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the join token: %w", err)
	}
	f.db.Audit(ctx, store.AuditEntry{OrgID: org.ID, Actor: "plumb serve", Action: "org.create", Target: "default", Detail: "bootstrap; join token in " + p})
	f.log.Info("created organization default", "join_token", p)
	return f.bootstrapAdmin(ctx, org)
}

// bootstrapAdmin makes BootstrapAdmin, with a random password written to
// AdminPasswordFile, an admin of org.
func (f *fleet) bootstrapAdmin(ctx context.Context, org *store.Org) error {
	pw := store.NewSecret("pw")
	hash, err := HashPassword(pw)
	if err != nil {
		return err
	}
	u, err := f.db.CreateUser(ctx, BootstrapAdmin, hash)
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.db.SetRole(ctx, u.ID, org.ID, store.RoleAdmin); err != nil {
		return err
	}
	p := filepath.Join(f.repo, AdminPasswordFile)
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the admin password: %w", err)
	}
	f.db.Audit(ctx, store.AuditEntry{OrgID: org.ID, Actor: "plumb serve", Action: "user.role", Target: BootstrapAdmin, Detail: "admin; bootstrap, password in " + p})
	f.log.Info("created operator admin of organization default", "password_file", p)
	return nil
}

func (f *fleet) joinLimiter(org string) *rate.Limiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.joins[org]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(f.o.JoinRate), int(f.o.JoinRate*10))
		f.joins[org] = l
	}
	return l
}

// httpError is an answer with a status and one line.
type httpError struct {
	code  int
	msg   string
	cause error // errNotMember, or nil
}

func (e *httpError) Error() string { return e.msg }
func (e *httpError) Unwrap() error { return e.cause }

// errNotMember marks the refusal of a device in no organization.
var errNotMember = errors.New("device is not a member of an organization")

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// fail writes err as one JSON line {"error": ...} with its status (500 for
// an error that is not an *httpError, without its text).
func (f *fleet) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *codedError
	if errors.As(err, &ce) {
		problemCode(w, ce.code, ce.short, "%s", ce.msg)
		return
	}
	var he *httpError
	if !errors.As(err, &he) {
		f.log.Error("fleet request failed", "path", r.URL.Path, "err", err)
		he = errorf(http.StatusInternalServerError, "internal error: the fleet database failed (see the server log)")
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connect") {
			he = errorf(http.StatusServiceUnavailable, "fleet database unavailable: try again later")
			w.Header().Set("Retry-After", "5")
		}
	}
	problem(w, he.code, "%s", he.msg)
}

// authDevice authenticates a device write for the device id the request
// claims: the TLS client certificate's key must be the one id is the hash
// of, and bound to id in the database. An unknown device joins the
// organization of its join token, or is listed as pending and refused.
func (f *fleet) authDevice(r *http.Request, claimed string) (*store.Device, error) {
	spki, err := peerKey(r, claimed)
	if err != nil {
		return nil, err
	}
	id := claimed
	ctx := r.Context()
	d, err := f.db.Device(ctx, id)
	if err == nil {
		if !bytes.Equal(d.PublicKey, spki) {
			return nil, errorf(http.StatusForbidden, "device %s is bound to another key: only an operator can rebind it", id)
		}
		return d, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	reason := ""
	org, tokName := "", ""
	if tok := r.Header.Get(JoinTokenHeader); tok == "" {
		reason = "no join credential: the image's agent config has no join_token"
	} else if org, tokName, err = f.db.JoinTokenOrg(ctx, tok); errors.Is(err, store.ErrNotFound) {
		reason = "join token not valid (unknown or revoked)"
	} else if err != nil {
		return nil, err
	}
	if reason != "" {
		if !f.newID.Allow() {
			return nil, errorf(http.StatusTooManyRequests, "device %s is not in any organization (%s), and too many unknown devices are calling: try again later", id, reason)
		}
		err := f.db.RecordPending(ctx, store.Pending{ID: id, PublicKey: spki, Reason: reason, Remote: r.RemoteAddr}, f.o.MaxPending)
		if errors.Is(err, store.ErrFull) {
			return nil, errorf(http.StatusTooManyRequests, "device %s is not in any organization (%s), and the pending list is full (%d devices)", id, reason, f.o.MaxPending)
		}
		if err != nil {
			return nil, err
		}
		e := errorf(http.StatusForbidden, "device %s is not in any organization: %s; it is listed to operators as pending", id, reason)
		e.cause = errNotMember
		return nil, e
	}
	if !f.joinLimiter(org).Allow() {
		return nil, errorf(http.StatusTooManyRequests, "device %s: its organization is joining more than %g devices per second: try again later", id, f.o.JoinRate)
	}
	nd := &store.Device{ID: id, OrgID: org, PublicKey: spki, JoinedBy: "join token " + tokName}
	switch err := f.db.AddDevice(ctx, nd); {
	case errors.Is(err, store.ErrFull):
		return nil, errorf(http.StatusForbidden, "device %s: %v", id, err)
	case errors.Is(err, store.ErrExists):
		return f.authDevice(r, claimed) // joined by a request in parallel
	case err != nil:
		return nil, err
	}
	if err := f.db.AddEvents(ctx, id, store.Event{At: time.Now(), Kind: store.EventJoined, Summary: "joined with join token " + clip(tokName)}); err != nil {
		return nil, err
	}
	f.log.Info("device joined", "device", id, "org", org, "token", tokName)
	return f.db.Device(ctx, id)
}

// peerKey returns the PKIX key of the request's TLS client certificate
// after checking that the device id claimed is its hash.
func peerKey(r *http.Request, claimed string) ([]byte, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errorf(http.StatusUnauthorized, "device authentication: expected a TLS client certificate made from the device's identity key, got none")
	}
	cert := r.TLS.PeerCertificates[0]
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errorf(http.StatusUnauthorized, "device authentication: expected an ECDSA P-256 identity key, got %T", cert.PublicKey)
	}
	spki := cert.RawSubjectPublicKeyInfo
	if id := deviceapi.IDOf(spki); claimed != id {
		return nil, errorf(http.StatusForbidden, "device %s: the client certificate's key is device %s's: a device writes only as itself", truncate(claimed, 40), id)
	}
	return spki, nil
}

// ekOrg returns the organization whose EK CAs the EK certificate chains
// to, for the EK ekPub; "" for none.
func (f *fleet) ekOrg(ctx context.Context, certDER, ekPub []byte) (string, error) {
	if len(certDER) == 0 {
		return "", nil
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return "", nil
	}
	// EK certificates carry a critical subjectAltName (TPM manufacturer,
	// model, version) that Go lists as unhandled.
	unhandled := cert.UnhandledCriticalExtensions[:0]
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			unhandled = append(unhandled, oid)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	if key, err := x509.MarshalPKIXPublicKey(cert.PublicKey); err != nil || !bytes.Equal(key, ekPub) {
		return "", nil
	}
	order, cas, err := f.db.EKCAs(ctx)
	if err != nil {
		return "", err
	}
	for _, org := range order {
		pool := x509.NewCertPool()
		for _, p := range cas[org] {
			pool.AppendCertsFromPEM([]byte(p))
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return org, nil
		}
	}
	return "", nil
}

// joinByEK adds a device whose EK passed credential activation to the
// organization its EK certificate chains to.
func (f *fleet) joinByEK(r *http.Request, id, org string) error {
	spki, err := peerKey(r, id)
	if err != nil {
		return err
	}
	err = f.db.AddDevice(r.Context(), &store.Device{ID: id, OrgID: org, PublicKey: spki, JoinedBy: "EK certificate"})
	switch {
	case errors.Is(err, store.ErrExists):
		_, err = f.authDevice(r, id) // joined meanwhile: the same key?
		return err
	case errors.Is(err, store.ErrFull):
		return errorf(http.StatusForbidden, "device %s: %v", id, err)
	case err != nil:
		return err
	}
	f.log.Info("device joined", "device", id, "org", org, "by", "EK certificate")
	return f.db.AddEvents(r.Context(), id, store.Event{At: time.Now(), Kind: store.EventJoined, Summary: "joined with its EK certificate (credential activation passed)"})
}

// status answers POST /v1/devices/<id>/status: the device's signed report.
// 204 only after the report and its history are committed.
func (f *fleet) status(w http.ResponseWriter, r *http.Request, id string) {
	if err := f.storeStatus(r, id); err != nil {
		f.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fleet) storeStatus(r *http.Request, id string) error {
	if !deviceIDRE.MatchString(id) {
		return errorf(http.StatusBadRequest, "device id: expected 1-64 of a-z 0-9 -, got %q", truncate(id, 40))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportSize+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the report: %v", err)
	}
	if len(body) > maxReportSize {
		return errorf(http.StatusRequestEntityTooLarge, "report: expected at most %d bytes", maxReportSize)
	}
	d, err := f.authDevice(r, id)
	if err != nil {
		return err
	}
	cur, err := parseStatus(body)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if cur.Device.ID != id {
		return errorf(http.StatusBadRequest, "report: device.id: expected %q (the URL's), got %q", id, truncate(cur.Device.ID, 40))
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return errorf(http.StatusBadRequest, "report: %v", err)
	}
	return f.db.RecordReport(r.Context(), id, history(d, cur, compact.Bytes(), time.Now().UTC()))
}

// prune drops history past the retention, hourly, until ctx ends.
func (f *fleet) prune(ctx context.Context) {
	if f.o.Retention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := f.db.PruneEvents(ctx, time.Now().Add(-f.o.Retention)); err != nil {
			f.log.Warn("pruning device history", "err", err)
		} else if n > 0 {
			f.log.Info("pruned device history", "entries", n, "older_than", f.o.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

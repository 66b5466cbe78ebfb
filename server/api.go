package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plumb-os/plumb/server/store"
)

// The operator API, JSON under /v1/ (docs/api.md). Who may call what:
//
//   - POST /v1/devices/ID/status and /v1/attest/...: the device ID itself,
//     by mutual TLS (fleet.go, attest.go).
//   - POST /v1/login: anyone, rate limited; it answers a session cookie and
//     a CSRF token. POST /v1/logout, GET /v1/me: a session.
//   - /v1/orgs/ORG/...: an operator of ORG, by API token (Authorization:
//     Bearer) or session cookie; with a cookie, every method but GET also
//     needs the X-CSRF-Token header. Each route names the weakest role
//     that may call it. Another organization's devices are visible only
//     through a grant, and only the granted phase.
//
// Every error is one line, {"error": "..."}, with its HTTP status.

// Session cookie and CSRF header names.
const (
	SessionCookie = "plumb_session"
	CSRFHeader    = "X-CSRF-Token"
	sessionTTL    = 12 * time.Hour
	maxAPIBody    = 64 << 10
)

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
)

// caller is an authenticated operator acting in one organization.
type caller struct {
	org   *store.Org
	role  string
	actor string // for the audit log: "user alice", "token ci (id)"
}

func (c *caller) can(role string) bool { return store.RoleRank(c.role) >= store.RoleRank(role) }

// route answers everything under /v1/ but the attestation endpoints.
func (f *fleet) route(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	seg := strings.Split(p, "/")
	var err error
	switch {
	case len(seg) == 3 && seg[0] == "devices" && seg[2] == "status":
		if r.Method != http.MethodPost {
			err = methodNotAllowed(w, r, http.MethodPost)
			break
		}
		f.status(w, r, seg[1])
		return
	case len(seg) == 3 && seg[0] == "devices" && seg[2] == "wake" && f.wake != nil:
		err = f.wakeStream(w, r, f.wake, seg[1])
	case p == "login":
		err = f.login(w, r)
	case p == "logout":
		err = f.logout(w, r)
	case p == "me":
		err = f.me(w, r)
	case len(seg) >= 3 && seg[0] == "orgs":
		err = f.orgRoute(w, r, seg[1], seg[2:])
	default:
		err = errorf(http.StatusNotFound, "no endpoint %s %s: see docs/api.md", r.Method, truncate(r.URL.Path, 80))
	}
	if err != nil {
		f.fail(w, r, err)
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow ...string) error {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s: expected %s", r.Method, truncate(r.URL.Path, 80), strings.Join(allow, " or "))
}

// decode reads a bounded JSON body, rejecting unknown fields.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "request body: expected Content-Type application/json, got %q", truncate(ct, 40))
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "request body: expected at most %d bytes", maxAPIBody)
		}
		return errorf(http.StatusBadRequest, "request body: %s", oneLine(err.Error()))
	}
	return nil
}

func oneLine(s string) string { return truncate(strings.Join(strings.Fields(s), " "), 200) }

// login: {"user", "password"} -> session cookie, {"csrf", "orgs"}.
func (f *fleet) login(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, r, http.MethodPost)
	}
	var in struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	sid, csrf, ms, err := f.startSession(r, in.User, in.Password)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	reply(w, map[string]any{"user": in.User, "csrf": csrf, "orgs": ms})
	return nil
}

// startSession checks a user's password (rate limited: failures count
// against the process's login limiter) and starts a session: the session
// id for the cookie, its CSRF token and the user's organizations. Each
// organization's audit log records the login. POST /v1/login and the
// page's login form both call it.
func (f *fleet) startSession(r *http.Request, user, password string) (sid, csrf string, ms []store.Membership, err error) {
	if !f.logins.Allow() {
		return "", "", nil, errorf(http.StatusTooManyRequests, "too many login attempts: try again later")
	}
	u, err := f.db.UserByName(r.Context(), user)
	if errors.Is(err, store.ErrNotFound) {
		CheckPassword("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", password) // same time as a wrong password
		return "", "", nil, errorf(http.StatusUnauthorized, "login: wrong user name or password")
	}
	if err != nil {
		return "", "", nil, err
	}
	if !CheckPassword(u.Password, password) {
		return "", "", nil, errorf(http.StatusUnauthorized, "login: wrong user name or password")
	}
	f.logins.AllowN(time.Now(), -1) // a good login does not count
	sid, csrf, err = f.db.CreateSession(r.Context(), u.ID, sessionTTL)
	if err != nil {
		return "", "", nil, err
	}
	if ms, err = f.db.Memberships(r.Context(), u.ID); err != nil {
		return "", "", nil, err
	}
	for _, m := range ms {
		f.db.Audit(r.Context(), store.AuditEntry{OrgID: m.OrgID, Actor: "user " + u.Name, Action: "login", Detail: r.RemoteAddr})
	}
	return sid, csrf, ms, nil
}

func (f *fleet) logout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, r, http.MethodPost)
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return errorf(http.StatusUnauthorized, "logout: no session cookie")
	}
	se, err := f.db.SessionByID(r.Context(), c.Value)
	if err != nil {
		return errorf(http.StatusUnauthorized, "logout: session unknown or expired")
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(se.CSRF)) != 1 {
		return errorf(http.StatusForbidden, "logout: expected the session's CSRF token in %s", CSRFHeader)
	}
	if err := f.db.DeleteSession(r.Context(), c.Value); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *fleet) me(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, r, http.MethodGet)
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return errorf(http.StatusUnauthorized, "no session: log in with POST /v1/login")
	}
	se, err := f.db.SessionByID(r.Context(), c.Value)
	if err != nil {
		return errorf(http.StatusUnauthorized, "session unknown or expired: log in again")
	}
	ms, err := f.db.Memberships(r.Context(), se.UserID)
	if err != nil {
		return err
	}
	reply(w, map[string]any{"csrf": se.CSRF, "orgs": ms})
	return nil
}

// authOperator authenticates the caller for organization orgName.
func (f *fleet) authOperator(r *http.Request, orgName string) (*caller, error) {
	ctx := r.Context()
	org, err := f.db.OrgByName(ctx, orgName)
	if errors.Is(err, store.ErrNotFound) {
		org = nil
	} else if err != nil {
		return nil, err
	}
	notMember := errorf(http.StatusForbidden, "organization %q: you are not one of its operators", truncate(orgName, 64))
	if h := r.Header.Get("Authorization"); h != "" {
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errorf(http.StatusUnauthorized, "Authorization: expected \"Bearer <API token>\"")
		}
		t, err := f.db.TokenBySecret(ctx, strings.TrimSpace(secret))
		if errors.Is(err, store.ErrNotFound) {
			return nil, errorf(http.StatusUnauthorized, "API token unknown, revoked or expired")
		}
		if err != nil {
			return nil, err
		}
		if org == nil || t.OrgID != org.ID {
			return nil, notMember
		}
		return &caller{org: org, role: t.Role, actor: fmt.Sprintf("token %s (%s)", t.Name, t.ID)}, nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, errorf(http.StatusUnauthorized, "authentication: expected an API token (Authorization: Bearer) or a session cookie (POST /v1/login)")
	}
	se, err := f.db.SessionByID(ctx, c.Value)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusUnauthorized, "session unknown or expired: log in again")
	}
	if err != nil {
		return nil, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(se.CSRF)) != 1 {
		return nil, errorf(http.StatusForbidden, "CSRF check: expected the session's token in the %s header", CSRFHeader)
	}
	if org == nil {
		return nil, notMember
	}
	role, err := f.db.Role(ctx, se.UserID, org.ID)
	if err != nil {
		return nil, err
	}
	if role == "" {
		return nil, notMember
	}
	name := se.UserID
	return &caller{org: org, role: role, actor: "user " + f.userName(ctx, name)}, nil
}

func (f *fleet) userName(ctx context.Context, id string) string {
	var n string
	if err := f.db.DB().QueryRowContext(ctx, `SELECT name FROM users WHERE id = $1`, id).Scan(&n); err != nil {
		return id
	}
	return n
}

// endpoint is one operator route.
type endpoint struct {
	method string
	role   string
	h      func(w http.ResponseWriter, r *http.Request, c *caller, args []string) error
}

// orgList is the handler of a GET that lists one kind of the caller's
// organization's records: {"<key>": [...]}.
func orgList[T any](key string, list func(ctx context.Context, org string) ([]T, error)) func(http.ResponseWriter, *http.Request, *caller, []string) error {
	return func(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
		xs, err := list(r.Context(), c.org.ID)
		if err != nil {
			return err
		}
		if xs == nil {
			xs = []T{} // [], not null
		}
		reply(w, map[string]any{key: xs})
		return nil
	}
}

func (f *fleet) orgRoute(w http.ResponseWriter, r *http.Request, orgName string, rest []string) error {
	var eps []endpoint
	var args []string
	switch {
	case len(rest) == 1 && rest[0] == "devices":
		eps = []endpoint{{http.MethodGet, store.RoleViewer, f.listDevices}}
	case len(rest) == 2 && rest[0] == "devices":
		eps, args = []endpoint{{http.MethodGet, store.RoleViewer, f.getDevice}}, rest[1:]
	case len(rest) == 3 && rest[0] == "devices" && rest[2] == "events":
		eps, args = []endpoint{{http.MethodGet, store.RoleViewer, f.deviceEvents}}, rest[1:2]
	case len(rest) == 3 && rest[0] == "devices" && rest[2] == "attestation":
		eps, args = []endpoint{{http.MethodGet, store.RoleViewer, f.deviceAttestation}}, rest[1:2]
	case len(rest) == 3 && rest[0] == "devices" && rest[2] == "groups":
		eps, args = []endpoint{{http.MethodPut, store.RoleOperator, f.setGroups}}, rest[1:2]
	case len(rest) == 3 && rest[0] == "devices" && rest[2] == "rebind":
		eps, args = []endpoint{{http.MethodPost, store.RoleAdmin, f.rebind}}, rest[1:2]
	case len(rest) == 1 && rest[0] == "pending":
		eps = []endpoint{{http.MethodGet, store.RoleAdmin, f.listPending}}
	case len(rest) == 3 && rest[0] == "pending" && rest[2] == "approve":
		eps, args = []endpoint{{http.MethodPost, store.RoleAdmin, f.approve}}, rest[1:2]
	case len(rest) == 1 && rest[0] == "groups":
		eps = []endpoint{{http.MethodGet, store.RoleViewer, orgList("groups", f.db.Groups)}}
	case len(rest) == 1 && rest[0] == "releases":
		eps = []endpoint{{http.MethodGet, store.RoleViewer, orgList("releases", f.db.Releases)}}
	case len(rest) == 1 && rest[0] == "audit":
		eps = []endpoint{{http.MethodGet, store.RoleViewer, f.auditLog}}
	case len(rest) == 1 && rest[0] == "tokens":
		eps = []endpoint{{http.MethodGet, store.RoleAdmin, orgList("tokens", f.db.Tokens)}, {http.MethodPost, store.RoleAdmin, f.createToken}}
	case len(rest) == 2 && rest[0] == "tokens":
		eps, args = []endpoint{{http.MethodDelete, store.RoleAdmin, f.revokeToken}}, rest[1:]
	case len(rest) == 1 && rest[0] == "join-tokens":
		eps = []endpoint{{http.MethodPost, store.RoleAdmin, f.createJoinToken}}
	case len(rest) == 1 && rest[0] == "grants":
		eps = []endpoint{{http.MethodGet, store.RoleAdmin, orgList("grants_held", f.db.GrantsTo)}, {http.MethodPost, store.RoleAdmin, f.addGrant}}
	case len(rest) == 1 && rest[0] == "users":
		eps = []endpoint{{http.MethodPost, store.RoleAdmin, f.addUser}}
	default:
		return errorf(http.StatusNotFound, "no endpoint %s %s: see docs/api.md", r.Method, truncate(r.URL.Path, 80))
	}
	var ep *endpoint
	var allow []string
	for i := range eps {
		allow = append(allow, eps[i].method)
		if eps[i].method == r.Method {
			ep = &eps[i]
		}
	}
	if ep == nil {
		return methodNotAllowed(w, r, allow...)
	}
	c, err := f.authOperator(r, orgName)
	if err != nil {
		return err
	}
	if !c.can(ep.role) {
		return errorf(http.StatusForbidden, "%s %s needs the %s role in %s; you are %s", r.Method, truncate(r.URL.Path, 80), ep.role, c.org.Name, c.role)
	}
	for _, a := range args {
		if a == "" || len(a) > 64 {
			return errorf(http.StatusBadRequest, "path: expected a name or id of 1-64 characters, got %q", truncate(a, 40))
		}
	}
	return ep.h(w, r, c, args)
}

func (f *fleet) audit(ctx context.Context, c *caller, action, target, detail string) error {
	return f.db.Audit(ctx, store.AuditEntry{OrgID: c.org.ID, Actor: c.actor, Action: action, Target: target, Detail: detail})
}

// redact keeps only what the caller's phases allow.
func redact(d *store.Device) *store.Device {
	if d.OrgID != "" && len(d.Phases) == 3 {
		return d
	}
	out := *d
	out.Report = nil
	if !slices.Contains(d.Phases, store.PhaseOS) {
		out.Version, out.UpdatePhase, out.LastEvent, out.Verdict, out.Enrolled = "", "", "", "", time.Time{}
	}
	if !slices.Contains(d.Phases, store.PhaseApps) {
		out.WorkloadGroup, out.Workloads = "", ""
	}
	if !slices.Contains(d.Phases, store.PhaseProvisioning) && out.Lifecycle == "provisioning" {
		out.Lifecycle = ""
	}
	return &out
}

func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "%s: expected a number >= 0, got %q", name, truncate(v, 20))
	}
	return n, nil
}

func (f *fleet) listDevices(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit", store.MaxPage)
	if err != nil {
		return err
	}
	for _, k := range []string{"q", "group", "hardware", "version", "after"} {
		if len(q.Get(k)) > 128 {
			return errorf(http.StatusBadRequest, "%s: expected at most 128 characters", k)
		}
	}
	ds, err := f.db.Devices(r.Context(), store.DeviceQuery{Org: c.org.ID, Search: q.Get("q"), Group: q.Get("group"),
		Hardware: q.Get("hardware"), Version: q.Get("version"), After: q.Get("after"), Limit: limit})
	if err != nil {
		return err
	}
	out := make([]*store.Device, 0, len(ds))
	for _, d := range ds {
		d = redact(d)
		d.Report = nil // the list is a summary; GET the device for its report
		out = append(out, d)
	}
	reply(w, map[string]any{"devices": out})
	return nil
}

func (f *fleet) device(r *http.Request, c *caller, id string) (*store.Device, error) {
	d, err := f.db.DeviceFor(r.Context(), c.org.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "device %s: no such device in %s", truncate(id, 40), c.org.Name)
	}
	return d, err
}

func (f *fleet) getDevice(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	d, err := f.device(r, c, args[0])
	if err != nil {
		return err
	}
	reply(w, redact(d))
	return nil
}

func (f *fleet) deviceEvents(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	d, err := f.device(r, c, args[0])
	if err != nil {
		return err
	}
	after, err := queryInt(r, "after", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", store.MaxPage)
	if err != nil {
		return err
	}
	evs, err := f.db.Events(r.Context(), d.ID, int64(after), limit)
	if err != nil {
		return err
	}
	out := []store.Event{}
	for _, e := range evs {
		if p := store.EventPhase(e.Kind); p == "" || slices.Contains(d.Phases, p) {
			out = append(out, e)
		}
	}
	reply(w, map[string]any{"device": d.ID, "events": out})
	return nil
}

func (f *fleet) deviceAttestation(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	d, err := f.device(r, c, args[0])
	if err != nil {
		return err
	}
	if !slices.Contains(d.Phases, store.PhaseOS) {
		return errorf(http.StatusNotFound, "device %s has no attestation report you may see", d.ID)
	}
	b, err := f.db.LatestAttestation(r.Context(), d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "device %s has no attestation report", d.ID)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
	return nil
}

// owned is d when c's organization owns it.
func (f *fleet) owned(r *http.Request, c *caller, id string) (*store.Device, error) {
	d, err := f.device(r, c, id)
	if err != nil {
		return nil, err
	}
	if d.OrgID != c.org.ID {
		return nil, errorf(http.StatusForbidden, "device %s belongs to another organization: only its owner may change it", d.ID)
	}
	return d, nil
}

func (f *fleet) setGroups(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	d, err := f.owned(r, c, args[0])
	if err != nil {
		return err
	}
	var in struct {
		Groups []string `json:"groups"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if len(in.Groups) > 32 {
		return errorf(http.StatusBadRequest, "groups: expected at most 32, got %d", len(in.Groups))
	}
	for _, g := range in.Groups {
		if !groupRE.MatchString(g) {
			return errorf(http.StatusBadRequest, "group %q: expected 1-63 of A-Z a-z 0-9 . _ -", truncate(g, 40))
		}
	}
	if err := f.db.SetGroups(r.Context(), d.ID, in.Groups); err != nil {
		return err
	}
	detail := strings.Join(in.Groups, ",")
	f.db.AddEvents(r.Context(), d.ID, store.Event{At: time.Now().UTC(), Kind: store.EventOperator, Summary: clip(c.actor + " set groups: " + detail)})
	if err := f.audit(r.Context(), c, "device.groups", d.ID, detail); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rebind forgets the TPM (EK and AK) bound to a device, so that the
// device can enroll another one: after a TPM replacement or clear.
func (f *fleet) rebind(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	d, err := f.owned(r, c, args[0])
	if err != nil {
		return err
	}
	if err := f.db.ClearEnrollment(r.Context(), d.ID); err != nil {
		return err
	}
	f.db.AddEvents(r.Context(), d.ID, store.Event{At: time.Now().UTC(), Kind: store.EventOperator, Summary: clip(c.actor + " cleared the attestation binding (rebind)")})
	if err := f.audit(r.Context(), c, "device.rebind", d.ID, "attestation EK/AK binding cleared"); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *fleet) listPending(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	ps, err := f.db.PendingDevices(r.Context(), 0)
	if err != nil {
		return err
	}
	reply(w, map[string]any{"pending": ps})
	return nil
}

// approve joins a pending device to the caller's organization.
func (f *fleet) approve(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	p, err := f.db.PendingDevice(r.Context(), args[0])
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no pending device %s", truncate(args[0], 40))
	}
	if err != nil {
		return err
	}
	err = f.db.AddDevice(r.Context(), &store.Device{ID: p.ID, OrgID: c.org.ID, PublicKey: p.PublicKey, JoinedBy: "operator " + c.actor})
	switch {
	case errors.Is(err, store.ErrExists):
		return errorf(http.StatusConflict, "device %s is already a member of an organization", p.ID)
	case errors.Is(err, store.ErrFull):
		return errorf(http.StatusForbidden, "%s: %v", c.org.Name, err)
	case err != nil:
		return err
	}
	f.db.AddEvents(r.Context(), p.ID, store.Event{At: time.Now().UTC(), Kind: store.EventJoined, Summary: clip("approved by " + c.actor)})
	if err := f.audit(r.Context(), c, "device.approve", p.ID, "pending: "+p.Reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *fleet) auditLog(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	limit, err := queryInt(r, "limit", store.MaxPage)
	if err != nil {
		return err
	}
	es, err := f.db.AuditLog(r.Context(), c.org.ID, limit)
	if err != nil {
		return err
	}
	reply(w, map[string]any{"audit": es})
	return nil
}

func (f *fleet) createToken(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	var in struct {
		Name    string `json:"name"`
		Role    string `json:"role"`
		Expires string `json:"expires_in"` // Go duration; "" never
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if !nameRE.MatchString(in.Name) {
		return errorf(http.StatusBadRequest, "name: expected 1-63 of a-z 0-9 . _ -, got %q", truncate(in.Name, 40))
	}
	if store.RoleRank(in.Role) == 0 {
		return errorf(http.StatusBadRequest, "role: expected viewer, operator or admin, got %q", truncate(in.Role, 20))
	}
	var ttl time.Duration
	if in.Expires != "" {
		var err error
		if ttl, err = time.ParseDuration(in.Expires); err != nil || ttl <= 0 {
			return errorf(http.StatusBadRequest, "expires_in: expected a positive duration like \"720h\", got %q", truncate(in.Expires, 20))
		}
	}
	t, secret, err := f.db.CreateToken(r.Context(), c.org.ID, in.Name, in.Role, ttl)
	if err != nil {
		return err
	}
	if err := f.audit(r.Context(), c, "token.create", t.ID, in.Name+" "+in.Role); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	reply(w, map[string]any{"token": t, "secret": secret})
	return nil
}

func (f *fleet) revokeToken(w http.ResponseWriter, r *http.Request, c *caller, args []string) error {
	err := f.db.RevokeToken(r.Context(), c.org.ID, args[0])
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "token %s: no such live token in %s", truncate(args[0], 40), c.org.Name)
	}
	if err != nil {
		return err
	}
	if err := f.audit(r.Context(), c, "token.revoke", args[0], ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *fleet) createJoinToken(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if !nameRE.MatchString(in.Name) {
		return errorf(http.StatusBadRequest, "name: expected 1-63 of a-z 0-9 . _ -, got %q", truncate(in.Name, 40))
	}
	tok, err := f.db.CreateJoinToken(r.Context(), c.org.ID, in.Name)
	if err != nil {
		return err
	}
	if err := f.audit(r.Context(), c, "join-token.create", in.Name, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	reply(w, map[string]any{"name": in.Name, "join_token": tok})
	return nil
}

// addGrant: the caller's organization (the owner) lets another see one
// phase of its devices, all or one group's.
func (f *fleet) addGrant(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	var in struct {
		Org   string `json:"org"`
		Phase string `json:"phase"`
		Group string `json:"group"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if !store.ValidPhase(in.Phase) {
		return errorf(http.StatusBadRequest, "phase: expected provisioning, os or apps, got %q", truncate(in.Phase, 20))
	}
	if in.Group != "" && !groupRE.MatchString(in.Group) {
		return errorf(http.StatusBadRequest, "group %q: expected 1-63 of A-Z a-z 0-9 . _ -", truncate(in.Group, 40))
	}
	to, err := f.db.OrgByName(r.Context(), in.Org)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "org: no organization %q", truncate(in.Org, 64))
	}
	if err != nil {
		return err
	}
	if to.ID == c.org.ID {
		return errorf(http.StatusBadRequest, "org: expected another organization than %s", c.org.Name)
	}
	if err := f.db.AddGrant(r.Context(), store.Grant{Owner: c.org.ID, Grantee: to.ID, Phase: in.Phase, Group: in.Group}); err != nil {
		return err
	}
	if err := f.audit(r.Context(), c, "grant.add", to.Name, in.Phase+" "+in.Group); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// addUser makes a user (with a password) or gives an existing one a role.
func (f *fleet) addUser(w http.ResponseWriter, r *http.Request, c *caller, _ []string) error {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if !nameRE.MatchString(in.Name) {
		return errorf(http.StatusBadRequest, "name: expected 1-63 of a-z 0-9 . _ -, got %q", truncate(in.Name, 40))
	}
	if store.RoleRank(in.Role) == 0 {
		return errorf(http.StatusBadRequest, "role: expected viewer, operator or admin, got %q", truncate(in.Role, 20))
	}
	u, err := f.db.UserByName(r.Context(), in.Name)
	if errors.Is(err, store.ErrNotFound) {
		hash, herr := HashPassword(in.Password)
		if herr != nil {
			return errorf(http.StatusBadRequest, "%v", herr)
		}
		u, err = f.db.CreateUser(r.Context(), in.Name, hash)
	}
	if err != nil {
		return err
	}
	if err := f.db.SetRole(r.Context(), u.ID, c.org.ID, in.Role); err != nil {
		return err
	}
	if err := f.audit(r.Context(), c, "user.role", in.Name, in.Role); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

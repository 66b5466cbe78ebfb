package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/server/rollout"
	"github.com/plumb-os/plumb/server/store"
)

// The operator web page, server-rendered HTML under /ui/ (docs/fleet.md,
// "The page"). It is a second face of the operator API (api.go): every
// page authenticates with authOperator, scopes what it shows with the same
// store queries (DeviceFor, Devices, Events, ...) and redact, and needs the
// same role as the /v1 route it mirrors. Who may call what:
//
//   - GET /ui/login, POST /ui/login: anyone, rate limited like POST
//     /v1/login; the form carries a login CSRF token (a cookie and a field
//     that must match). A good login sets the plumb_session cookie.
//   - POST /ui/logout: a session, with its CSRF token in the form.
//   - GET /ui/ and /ui/static/style.css: anyone (/ui/ sends the logged-out
//     to the login form and lists a session's organizations).
//   - GET /ui/o/ORG/...: a viewer of ORG (session cookie or API token);
//     devices granted to ORG by another organization show only the phases
//     granted. The pending list on the overview: admins only.
//   - POST /ui/o/ORG/releases/HW/VERSION/(pause|resume|halt|waves): an
//     operator of ORG, with the session's CSRF token in the form field
//     "csrf". Each re-signs targets, snapshot and timestamp (never root)
//     and is recorded in the audit log.
//
// Every error is a page with one line (data-test="error") and its HTTP
// status; a page asked for without a session redirects to the login form.
// All output goes through html/template: device data is never trusted as
// HTML.

// PagePrefix is where the page is served; everything else but /v1/ is the
// TUF repository, whose top directories are metadata/ and targets/.
const PagePrefix = "/ui/"

// Caps of the page.
const (
	pageSize        = 50     // devices on one page of the list (?limit up to store.MaxPage)
	maxOverview     = 10_000 // devices counted on the overview
	maxPendingShown = 100
	maxFormBody     = 16 << 10
	overviewPage    = 200 // devices read at once for the overview (each with its last report, ≤ 64 KiB)
	loginCSRFCookie = "plumb_login_csrf"
)

//go:embed page/*.html page/style.css
var pageFS embed.FS

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"pathEscape": url.PathEscape,
	"list":       func(s ...string) []string { return s },
}).ParseFS(pageFS, "page/*.html"))

// view is what every page template gets.
type view struct {
	Title  string
	User   string // the caller, as the audit log names them
	Org    string
	Role   string
	CSRF   string // the session's CSRF token for forms ("" with an API token)
	Base   string // /ui/o/ORG
	Orgs   []store.Membership
	Status int
	Error  string
	Data   any
	// RolloutOrg: Org is the organization whose operators change the
	// repository's rollouts.
	RolloutOrg bool
}

// CanOperate reports whether the caller may press the rollout buttons:
// an operator or admin of the organization that runs the repository's
// rollouts (FleetOptions.RolloutOrg).
func (v *view) CanOperate() bool {
	return v.RolloutOrg && store.RoleRank(v.Role) >= store.RoleRank(store.RoleOperator)
}

// IsAdmin reports whether the caller is an admin of the organization.
func (v *view) IsAdmin() bool { return v.Role == store.RoleAdmin }

// page answers everything under /ui/.
func (f *fleet) page(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	if err := f.pageRoute(w, r); err != nil {
		f.pageFail(w, r, err)
	}
}

func (f *fleet) pageRoute(w http.ResponseWriter, r *http.Request) error {
	p := strings.TrimPrefix(r.URL.Path, "/ui")
	p = strings.TrimPrefix(p, "/")
	switch {
	case p == "":
		return f.pageHome(w, r)
	case p == "login":
		return f.pageLogin(w, r)
	case p == "logout":
		return f.pageLogout(w, r)
	case p == "static/style.css":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(w, r, http.MethodGet)
		}
		css, _ := pageFS.ReadFile("page/style.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		w.Write(css)
		return nil
	case strings.HasPrefix(p, "o/"):
		seg := strings.Split(strings.TrimSuffix(strings.TrimPrefix(p, "o/"), "/"), "/")
		return f.pageOrg(w, r, seg[0], seg[1:])
	}
	return errorf(http.StatusNotFound, "no page %s: the pages are under /ui/o/ORG/", truncate(r.URL.Path, 80))
}

// pageEndpoint is one organization page: the method, the weakest role
// that may call it, and the handler.
type pageEndpoint struct {
	method string
	role   string
	h      func(w http.ResponseWriter, r *http.Request, v *view, c *caller, args []string) error
}

// pageOrg routes /ui/o/ORG/REST and checks the caller: authOperator (as
// /v1/orgs/ORG/ does), then the route's role.
func (f *fleet) pageOrg(w http.ResponseWriter, r *http.Request, org string, rest []string) error {
	var ep pageEndpoint
	var args []string
	n := len(rest)
	switch {
	case n == 0:
		ep = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageOverview}
	case n == 1 && rest[0] == "devices":
		ep = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageDevices}
	case n == 2 && rest[0] == "devices":
		ep, args = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageDevice}, rest[1:]
	case n == 1 && rest[0] == "releases":
		ep = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageReleases}
	case n == 3 && rest[0] == "releases":
		ep, args = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageRelease}, rest[1:]
	case n == 4 && rest[0] == "releases" && slices.Contains([]string{"pause", "resume", "halt", "waves"}, rest[3]):
		ep, args = pageEndpoint{http.MethodPost, store.RoleOperator, f.pageRolloutAction}, rest[1:]
	case n == 1 && rest[0] == "groups":
		ep = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageGroups}
	case n == 1 && rest[0] == "audit":
		ep = pageEndpoint{http.MethodGet, store.RoleViewer, f.pageAudit}
	default:
		return errorf(http.StatusNotFound, "no page %s", truncate(r.URL.Path, 80))
	}
	if r.Method != ep.method && !(ep.method == http.MethodGet && r.Method == http.MethodHead) {
		return methodNotAllowed(w, r, ep.method)
	}
	for _, a := range args {
		if a == "" || len(a) > 128 {
			return errorf(http.StatusBadRequest, "path: expected a name or id of 1-128 characters, got %q", truncate(a, 40))
		}
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			return errorf(http.StatusBadRequest, "form: expected an urlencoded form of at most %d bytes", maxFormBody)
		}
		// authOperator checks the session's CSRF token in the header;
		// a form carries it in a field. Whatever header came is replaced.
		r.Header.Set(CSRFHeader, r.PostForm.Get("csrf"))
	}
	c, err := f.authOperator(r, org)
	if err != nil {
		return err
	}
	if !c.can(ep.role) {
		return errorf(http.StatusForbidden, "%s %s needs the %s role in %s; you are %s", r.Method, truncate(r.URL.Path, 80), ep.role, c.org.Name, c.role)
	}
	v := &view{User: c.actor, Org: c.org.Name, Role: c.role, Base: "/ui/o/" + url.PathEscape(c.org.Name), RolloutOrg: c.org.Name == f.rolloutOrg()}
	if ck, err := r.Cookie(SessionCookie); err == nil && r.Header.Get("Authorization") == "" {
		if se, err := f.db.SessionByID(r.Context(), ck.Value); err == nil {
			v.CSRF = se.CSRF
			v.Orgs, _ = f.db.Memberships(r.Context(), se.UserID)
		}
	}
	return ep.h(w, r, v, c, args)
}

// rolloutOrg is FleetOptions.RolloutOrg or its default.
func (f *fleet) rolloutOrg() string {
	if f.o.RolloutOrg != "" {
		return f.o.RolloutOrg
	}
	return DefaultRolloutOrg
}

// DefaultRolloutOrg is FleetOptions.RolloutOrg's default: the
// organization plumb serve bootstraps.
const DefaultRolloutOrg = "default"

// render executes a template into memory first, so that a failure sends
// an error page and never half a page.
func (f *fleet) render(w http.ResponseWriter, status int, name string, v *view) error {
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("rendering %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
	return nil
}

// pageFail answers err as an error page with one line and its status. A
// GET without a (live) session goes to the login form instead.
func (f *fleet) pageFail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		f.log.Error("page failed", "path", r.URL.Path, "err", err)
		he = errorf(http.StatusInternalServerError, "internal error: the fleet service failed (see the server log)")
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connect") {
			he = errorf(http.StatusServiceUnavailable, "fleet database unavailable: try again later")
			w.Header().Set("Retry-After", "5")
		}
	}
	if he.code == http.StatusUnauthorized && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	v := &view{Title: http.StatusText(he.code), Status: he.code, Error: oneLine(he.msg)}
	if rerr := f.render(w, he.code, "error", v); rerr != nil {
		f.log.Error("rendering the error page", "err", rerr)
		http.Error(w, v.Error, he.code)
	}
}

// pageHome sends the logged-out to the login form, a member of one
// organization to its overview, and lists the organizations of others.
func (f *fleet) pageHome(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, r, http.MethodGet)
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return nil
	}
	se, err := f.db.SessionByID(r.Context(), ck.Value)
	if errors.Is(err, store.ErrNotFound) {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return nil
	}
	if err != nil {
		return err
	}
	ms, err := f.db.Memberships(r.Context(), se.UserID)
	if err != nil {
		return err
	}
	if len(ms) == 1 {
		http.Redirect(w, r, "/ui/o/"+url.PathEscape(ms[0].OrgName)+"/", http.StatusSeeOther)
		return nil
	}
	return f.render(w, http.StatusOK, "home", &view{Title: "Organizations", User: f.userName(r.Context(), se.UserID), CSRF: se.CSRF, Orgs: ms})
}

// pageLogin shows the login form (GET) or logs in (POST: user, password,
// csrf). The login CSRF token is a random cookie the form must repeat.
func (f *fleet) pageLogin(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		tok := store.NewSecret("login")
		http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/ui/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
		return f.render(w, http.StatusOK, "login", &view{Title: "Log in", CSRF: tok})
	case http.MethodPost:
	default:
		return methodNotAllowed(w, r, http.MethodGet, http.MethodPost)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "login form: expected an urlencoded form of at most %d bytes", maxFormBody)
	}
	ck, err := r.Cookie(loginCSRFCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		return errorf(http.StatusForbidden, "login: the form's CSRF token does not match: open /ui/login again")
	}
	sid, _, _, err := f.startSession(r, r.PostForm.Get("user"), r.PostForm.Get("password"))
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.code == http.StatusUnauthorized {
			tok := store.NewSecret("login")
			http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: tok, Path: "/ui/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
			return f.render(w, http.StatusUnauthorized, "login", &view{Title: "Log in", CSRF: tok, Status: he.code, Error: he.msg})
		}
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	return nil
}

// pageLogout ends the session (POST with its CSRF token in the form).
func (f *fleet) pageLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, r, http.MethodPost)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return errorf(http.StatusBadRequest, "logout form: expected an urlencoded form")
	}
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return errorf(http.StatusUnauthorized, "logout: no session cookie")
	}
	se, err := f.db.SessionByID(r.Context(), ck.Value)
	if err != nil {
		return errorf(http.StatusUnauthorized, "logout: session unknown or expired")
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(se.CSRF)) != 1 {
		return errorf(http.StatusForbidden, "logout: expected the session's CSRF token in the form")
	}
	if err := f.db.DeleteSession(r.Context(), ck.Value); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return nil
}

// --- overview ---

// countRow is one value of a dimension and how many devices have it.
type countRow struct {
	Key string
	N   int
}

type countTable struct {
	Name, Title string
	Rows        []countRow
}

type pageProblem struct {
	Kind   string // rollback, attestation, silent, pending
	Device string
	Text   string
	At     time.Time
	Link   bool // the device has a page (pending ones do not)
}

type overviewData struct {
	Total       int
	Capped      bool
	Tables      []countTable
	Problems    []pageProblem
	SilentAfter time.Duration
	Pending     int
}

// silentAfter is how long a device may stay quiet before it is listed.
func (f *fleet) silentAfter() time.Duration {
	if f.o.SilentAfter > 0 {
		return f.o.SilentAfter
	}
	return DefaultSilentAfter
}

// DefaultSilentAfter is FleetOptions.SilentAfter's default: three polls
// at the 5-minute poll the fleet is sized for.
const DefaultSilentAfter = 15 * time.Minute

// eachDevice calls fn with every device c may see (redacted as the API
// does), at most maxOverview; it reports whether it stopped at the cap.
func (f *fleet) eachDevice(ctx context.Context, c *caller, fn func(d *store.Device)) (bool, error) {
	after, n := "", 0
	for {
		ds, err := f.db.Devices(ctx, store.DeviceQuery{Org: c.org.ID, After: after, Limit: overviewPage})
		if err != nil {
			return false, err
		}
		for _, d := range ds {
			if n == maxOverview {
				return true, nil
			}
			fn(redact(d))
			n++
		}
		if len(ds) < overviewPage {
			return false, nil
		}
		after = ds[len(ds)-1].ID
	}
}

// pageOverview: counts by hardware, release, lifecycle phase, update
// state, attestation verdict and last seen, and the problem list. Who:
// viewers (the pending devices: admins, as GET /v1/orgs/ORG/pending).
func (f *fleet) pageOverview(w http.ResponseWriter, r *http.Request, v *view, c *caller, _ []string) error {
	dims := []struct{ name, title string }{
		{"hardware", "Hardware"}, {"version", "Release"}, {"lifecycle", "Lifecycle phase"},
		{"state", "Update state"}, {"verdict", "Attestation"}, {"seen", "Last seen"},
	}
	counts := map[string]map[string]int{}
	for _, d := range dims {
		counts[d.name] = map[string]int{}
	}
	silent := f.silentAfter()
	now := time.Now()
	data := &overviewData{SilentAfter: silent}
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	capped, err := f.eachDevice(r.Context(), c, func(d *store.Device) {
		data.Total++
		counts["hardware"][orNone(d.Hardware)]++
		counts["version"][orNone(d.Version)]++
		counts["lifecycle"][orNone(d.Lifecycle)]++
		counts["state"][orNone(d.UpdatePhase)]++
		counts["verdict"][orNone(d.Verdict)]++
		age := now.Sub(d.LastSeen)
		switch {
		case age <= silent/3:
			counts["seen"]["within one poll"]++
		case age <= silent:
			counts["seen"]["within "+silent.String()]++
		default:
			counts["seen"]["silent (over "+silent.String()+")"]++
			data.Problems = append(data.Problems, pageProblem{Kind: "silent", Device: d.ID, Link: true, At: d.LastSeen,
				Text: "silent for " + age.Round(time.Second).String() + " (more than " + silent.String() + ")"})
		}
		if strings.HasPrefix(d.LastEvent, "rolled back") {
			data.Problems = append(data.Problems, pageProblem{Kind: "rollback", Device: d.ID, Link: true, At: d.ReportAt, Text: d.LastEvent})
		}
		if d.Verdict == "failed" {
			data.Problems = append(data.Problems, pageProblem{Kind: "attestation", Device: d.ID, Link: true, At: d.ReportAt, Text: "attestation failed"})
		}
	})
	if err != nil {
		return err
	}
	data.Capped = capped
	for _, d := range dims {
		t := countTable{Name: d.name, Title: d.title}
		for k, n := range counts[d.name] {
			t.Rows = append(t.Rows, countRow{k, n})
		}
		sort.Slice(t.Rows, func(i, j int) bool {
			if t.Rows[i].N != t.Rows[j].N {
				return t.Rows[i].N > t.Rows[j].N
			}
			return t.Rows[i].Key < t.Rows[j].Key
		})
		data.Tables = append(data.Tables, t)
	}
	if c.can(store.RoleAdmin) {
		ps, err := f.db.PendingDevices(r.Context(), maxPendingShown)
		if err != nil {
			return err
		}
		data.Pending = len(ps)
		for _, p := range ps {
			data.Problems = append(data.Problems, pageProblem{Kind: "pending", Device: p.ID, At: p.LastSeen,
				Text: fmt.Sprintf("pending (%d attempts from %s): %s", p.Attempts, p.Remote, p.Reason)})
		}
	}
	v.Title, v.Data = "Overview", data
	return f.render(w, http.StatusOK, "overview", v)
}

// --- device list ---

type devicesData struct {
	Devices                                     []*store.Device
	Q, Group, Hardware, Version, Verdict, State string
	Groups                                      []store.GroupCount
	Next                                        string // query string of the next page, "" at the end
	Limit                                       int
}

// pageDevices: the device list, filtered (group, hardware, version,
// verdict, state) and searched (q), by pages of ?limit (default 50, at
// most 1000) after ?after. Who: viewers. A filter on what a grant hides
// (version, verdict, state of a device whose OS phase is not granted)
// never matches that device.
func (f *fleet) pageDevices(w http.ResponseWriter, r *http.Request, v *view, c *caller, _ []string) error {
	q := r.URL.Query()
	for _, k := range []string{"q", "group", "hardware", "version", "verdict", "state", "after"} {
		if len(q.Get(k)) > 128 {
			return errorf(http.StatusBadRequest, "%s: expected at most 128 characters", k)
		}
	}
	limit, err := queryInt(r, "limit", pageSize)
	if err != nil {
		return err
	}
	if limit == 0 || limit > store.MaxPage {
		return errorf(http.StatusBadRequest, "limit: expected 1 to %d, got %d", store.MaxPage, limit)
	}
	data := &devicesData{Q: q.Get("q"), Group: q.Get("group"), Hardware: q.Get("hardware"), Version: q.Get("version"),
		Verdict: q.Get("verdict"), State: q.Get("state"), Limit: limit}
	ds, err := f.db.Devices(r.Context(), store.DeviceQuery{Org: c.org.ID, Search: data.Q, Group: data.Group, Hardware: data.Hardware,
		Version: data.Version, Verdict: data.Verdict, State: data.State, After: q.Get("after"), Limit: limit})
	if err != nil {
		return err
	}
	osFilter := data.Version != "" || data.Verdict != "" || data.State != ""
	for _, d := range ds {
		if osFilter && !slices.Contains(d.Phases, store.PhaseOS) {
			continue
		}
		data.Devices = append(data.Devices, redact(d))
	}
	if len(ds) == limit {
		nq := url.Values{}
		for k, vs := range q {
			if k != "after" {
				nq[k] = vs
			}
		}
		nq.Set("after", ds[len(ds)-1].ID)
		data.Next = v.Base + "/devices?" + nq.Encode()
	}
	if data.Groups, err = f.db.Groups(r.Context(), c.org.ID); err != nil {
		return err
	}
	v.Title, v.Data = "Devices", data
	return f.render(w, http.StatusOK, "devices", v)
}

// --- device page ---

// timelineEvent is a history entry as the timeline shows it.
type timelineEvent struct {
	store.Event
	Reason string // a rollback's or bad release's reason
}

type attestCheck struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
	Detail   string `json:"detail"`
}

type attestReport struct {
	Verdict  string        `json:"verdict"`
	Release  string        `json:"release"`
	Hardware string        `json:"hardware"`
	Time     time.Time     `json:"time"`
	Checks   []attestCheck `json:"checks"`
}

type workload struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Health   string `json:"health"`
	Restarts int    `json:"restarts"`
}

type deviceData struct {
	D           *store.Device
	Owner       bool
	Timeline    []timelineEvent
	Attestation *attestReport
	AttestError string
	Workloads   []workload
	WorkloadErr string
	SeeApps     bool
	SeeOS       bool
}

// rollbackReason is the reason in "rolled back from V: REASON" or "bad
// release V: REASON".
func rollbackReason(e store.Event) string {
	switch e.Kind {
	case store.EventRolledBack, store.EventBadRelease:
		if _, why, ok := strings.Cut(e.Summary, ": "); ok {
			return why
		}
	}
	return ""
}

// pageDevice: one device's timeline (install, updates, rollbacks with
// their reasons, attestation verdicts, workload changes, operator
// actions), its last attestation report check by check, and the state of
// its workloads. Who: viewers of an organization that owns the device or
// holds a grant on it (404 otherwise, as GET /v1/orgs/ORG/devices/ID);
// only the granted phases are shown.
func (f *fleet) pageDevice(w http.ResponseWriter, r *http.Request, v *view, c *caller, args []string) error {
	d, err := f.device(r, c, args[0])
	if err != nil {
		return err
	}
	full := d
	d = redact(d)
	data := &deviceData{D: d, Owner: d.OrgID == c.org.ID, SeeOS: slices.Contains(d.Phases, store.PhaseOS), SeeApps: slices.Contains(d.Phases, store.PhaseApps)}
	evs, err := f.db.Events(r.Context(), d.ID, 0, store.MaxPage)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if p := store.EventPhase(e.Kind); p == "" || slices.Contains(d.Phases, p) {
			e.Detail = nil // the attestation report is shown below, not in the timeline
			data.Timeline = append(data.Timeline, timelineEvent{Event: e, Reason: rollbackReason(e)})
		}
	}
	if data.SeeOS {
		b, err := f.db.LatestAttestation(r.Context(), d.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			var rep attestReport
			if err := json.Unmarshal(b, &rep); err != nil {
				data.AttestError = "the stored report is not readable: " + oneLine(err.Error())
			} else {
				data.Attestation = &rep
			}
		}
	}
	if data.SeeApps {
		data.WorkloadErr = full.Workloads
		if len(full.Report) > 0 {
			var rep struct {
				Status struct {
					Workloads *struct {
						LastError  string     `json:"last_error"`
						Containers []workload `json:"containers"`
					} `json:"workloads"`
				} `json:"status"`
			}
			if json.Unmarshal(full.Report, &rep) == nil && rep.Status.Workloads != nil {
				data.Workloads = rep.Status.Workloads.Containers
				if len(data.Workloads) > 256 {
					data.Workloads = data.Workloads[:256]
				}
			}
		}
	}
	v.Title, v.Data = "Device "+d.ID, data
	return f.render(w, http.StatusOK, "device", v)
}

// --- releases ---

type releaseRow struct {
	store.ReleaseCount
	State string // "rolling out", "paused", "halted: reason", "" unknown
	Link  string
}

type releasesData struct {
	Releases []releaseRow
	RepoErr  string
}

// repoReleases reads the rollout control of every release in the served
// repository, by hardware/version.
func (f *fleet) repoReleases() (map[string]release.Facts, error) {
	repo, err := tufrepo.Open(f.repo, tufrepo.Options{Log: f.log})
	if err != nil {
		return nil, err
	}
	rs, err := repo.Releases()
	if err != nil {
		return nil, err
	}
	out := map[string]release.Facts{}
	for _, rel := range rs {
		if rel.Facts.Kind == release.KindFull && rel.Path == release.TargetPath(rel.Facts.Hardware, rel.Facts.Version) {
			out[rel.Facts.Hardware+"/"+rel.Facts.Version] = rel.Facts
		}
	}
	return out, nil
}

func rolloutState(f release.Facts) string {
	switch {
	case f.Halted != nil:
		return "halted: " + f.Halted.Reason
	case f.Paused:
		return "paused"
	}
	return "rolling out"
}

func (v *view) releaseLink(hw, version string) string {
	return v.Base + "/releases/" + url.PathEscape(hw) + "/" + url.PathEscape(version)
}

// pageReleases lists the releases in the repository and those the
// organization's devices run or tried, with counts. Who: viewers.
func (f *fleet) pageReleases(w http.ResponseWriter, r *http.Request, v *view, c *caller, _ []string) error {
	counts, err := f.db.Releases(r.Context(), c.org.ID)
	if err != nil {
		return err
	}
	data := &releasesData{}
	facts, err := f.repoReleases()
	if err != nil {
		data.RepoErr = "the served directory's repository cannot be read: " + oneLine(err.Error())
	}
	seen := map[string]bool{}
	for _, rc := range counts {
		k := rc.Hardware + "/" + rc.Version
		seen[k] = true
		row := releaseRow{ReleaseCount: rc, Link: v.releaseLink(rc.Hardware, rc.Version)}
		if fa, ok := facts[k]; ok {
			row.State = rolloutState(fa)
		}
		data.Releases = append(data.Releases, row)
	}
	for k, fa := range facts {
		if !seen[k] {
			data.Releases = append(data.Releases, releaseRow{ReleaseCount: store.ReleaseCount{Hardware: fa.Hardware, Version: fa.Version},
				State: rolloutState(fa), Link: v.releaseLink(fa.Hardware, fa.Version)})
		}
	}
	sort.Slice(data.Releases, func(i, j int) bool {
		a, b := data.Releases[i], data.Releases[j]
		if a.Hardware != b.Hardware {
			return a.Hardware < b.Hardware
		}
		return a.Version < b.Version
	})
	v.Title, v.Data = "Releases", data
	return f.render(w, http.StatusOK, "releases", v)
}

type stage struct {
	Name string
	N    int64
}

type releaseData struct {
	Hardware, Version string
	Link              string
	Stages            []stage
	Facts             *release.Facts
	State             string
	Chart             chart
	Flash             string
}

// pageRelease: how many of the organization's devices are at each stage
// of a release, its adoption curve (an SVG drawn here), its rollout
// control, and for operators the pause / resume / halt / waves forms.
// Who: viewers (the forms: operators and admins).
func (f *fleet) pageRelease(w http.ResponseWriter, r *http.Request, v *view, c *caller, args []string) error {
	hw, version := args[0], args[1]
	st, err := f.db.ReleaseStages(r.Context(), c.org.ID, hw, version)
	if err != nil {
		return err
	}
	facts, ferr := f.repoReleases()
	fa, inRepo := facts[hw+"/"+version]
	known := inRepo
	for _, n := range st {
		known = known || n > 0
	}
	if !known {
		if ferr != nil {
			return errorf(http.StatusNotFound, "release %s/%s: none of %s's devices has it, and the repository cannot be read", truncate(hw, 40), truncate(version, 40), c.org.Name)
		}
		return errorf(http.StatusNotFound, "release %s/%s: not in the repository, and no device of %s has it", truncate(hw, 40), truncate(version, 40), c.org.Name)
	}
	data := &releaseData{Hardware: hw, Version: version, Link: v.releaseLink(hw, version), Flash: r.URL.Query().Get("done")}
	if len(data.Flash) > 64 {
		data.Flash = ""
	}
	for _, k := range []string{"running", store.OutcomeTrying, store.OutcomeCommitted, store.OutcomeFailed} {
		data.Stages = append(data.Stages, stage{k, st[k]})
	}
	if inRepo {
		data.Facts, data.State = &fa, rolloutState(fa)
	}
	times, err := f.db.Adoption(r.Context(), c.org.ID, hw, version)
	if err != nil {
		return err
	}
	data.Chart = adoptionChart(times, time.Now())
	v.Title, v.Data = "Release "+hw+"/"+version, data
	return f.render(w, http.StatusOK, "release", v)
}

// pageRolloutAction: POST .../releases/HW/VERSION/(pause|resume|halt|waves)
// changes the release's rollout control with the code `plumb rollout`
// runs (rollout.Apply: re-signs targets, snapshot and timestamp, never
// root) and records it in the organization's audit log. Who: operators
// and admins of FleetOptions.RolloutOrg (a release is served to every
// organization's devices, so no other tenant may pause it), with the
// session's CSRF token (checked by pageOrg through authOperator). Form fields: halt: reason; waves: group, waves (steps
// like "10%@now 50%@+24h").
func (f *fleet) pageRolloutAction(w http.ResponseWriter, r *http.Request, v *view, c *caller, args []string) error {
	hw, version, action := args[0], args[1], args[2]
	if !v.RolloutOrg {
		return errorf(http.StatusForbidden, "%s %s/%s: only operators of %s change the repository's rollouts; you act for %s",
			action, truncate(hw, 40), truncate(version, 40), f.rolloutOrg(), c.org.Name)
	}
	ch := rollout.Change{Dir: f.repo, RepoOptions: tufrepo.Options{Log: f.log}, Release: hw + "/" + version,
		Actor: c.actor, Audit: rollout.StoreAudit{DB: f.db, OrgID: c.org.ID}}
	switch action {
	case "pause":
		ch.Action, ch.Edit = "rollout.pause", rollout.Pause
	case "resume":
		ch.Action, ch.Edit = "rollout.resume", rollout.Resume
	case "halt":
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if reason == "" || len(reason) > 512 || strings.ContainsAny(reason, "\r\n") {
			return errorf(http.StatusBadRequest, "reason: expected why the release is halted, one line of 1-512 characters")
		}
		ch.Action, ch.Edit = "rollout.halt", rollout.Halt(reason, c.actor)
	case "waves":
		group := strings.TrimSpace(r.PostForm.Get("group"))
		if group != "" && !nameRE.MatchString(group) {
			return errorf(http.StatusBadRequest, "group %q: expected an agent config group like \"canary\" (1-63 of a-z 0-9 . _ -)", truncate(group, 40))
		}
		specs := strings.Fields(r.PostForm.Get("waves"))
		if len(specs) == 0 || len(specs) > 32 {
			return errorf(http.StatusBadRequest, "waves: expected 1 to 32 steps like \"10%%@now 50%%@+24h 100%%@+3d\", got %d", len(specs))
		}
		var steps []rollout.Step
		for _, s := range specs {
			st, err := rollout.ParseStep(s)
			if err != nil {
				return errorf(http.StatusBadRequest, "%s", oneLine(err.Error()))
			}
			steps = append(steps, st)
		}
		ch.Action, ch.Group, ch.Edit = "rollout.set", group, rollout.SetWaves(group, steps)
	}
	if _, _, _, err := rollout.Apply(r.Context(), ch); err != nil {
		if errors.Is(err, tufrepo.ErrNoRelease) {
			return errorf(http.StatusNotFound, "%s %s/%s: %s", action, truncate(hw, 40), truncate(version, 40), oneLine(err.Error()))
		}
		if errors.Is(err, tufrepo.ErrInvalid) {
			return errorf(http.StatusBadRequest, "%s %s/%s: %s", action, truncate(hw, 40), truncate(version, 40), oneLine(err.Error()))
		}
		f.log.Error("rollout change from the page failed", "release", hw+"/"+version, "action", action, "err", err)
		return errorf(http.StatusInternalServerError, "%s %s/%s failed: %s", action, truncate(hw, 40), truncate(version, 40), oneLine(err.Error()))
	}
	http.Redirect(w, r, v.releaseLink(hw, version)+"?done="+url.QueryEscape(action), http.StatusSeeOther)
	return nil
}

// --- groups and audit ---

// pageGroups lists the organization's groups with their device counts.
// Who: viewers.
func (f *fleet) pageGroups(w http.ResponseWriter, r *http.Request, v *view, c *caller, _ []string) error {
	gs, err := f.db.Groups(r.Context(), c.org.ID)
	if err != nil {
		return err
	}
	v.Title, v.Data = "Groups", gs
	return f.render(w, http.StatusOK, "groups", v)
}

// pageAudit shows the organization's audit log, newest first (?limit,
// default and at most 1000). Who: viewers, as GET /v1/orgs/ORG/audit.
func (f *fleet) pageAudit(w http.ResponseWriter, r *http.Request, v *view, c *caller, _ []string) error {
	limit, err := queryInt(r, "limit", store.MaxPage)
	if err != nil {
		return err
	}
	es, err := f.db.AuditLog(r.Context(), c.org.ID, limit)
	if err != nil {
		return err
	}
	v.Title, v.Data = "Audit log", es
	return f.render(w, http.StatusOK, "audit", v)
}

// --- the adoption chart ---

// chart is an SVG line chart drawn on the server: the cumulative count of
// devices that got a release, over time.
type chart struct {
	W, H         int
	Points       []chartPoint
	Line         string // the polyline's points attribute
	XMin, XMax   string // time labels
	YMax         int
	Left, Bottom int
	Empty        bool
}

type chartPoint struct {
	X, Y  float64
	N     int
	Label string
}

// maxChartPoints bounds the points drawn; past it devices are summed into
// equal time buckets.
const maxChartPoints = 200

func adoptionChart(times []time.Time, now time.Time) chart {
	c := chart{W: 640, H: 240, Left: 48, Bottom: 212}
	if len(times) == 0 {
		c.Empty = true
		return c
	}
	t0 := times[0]
	t1 := now
	if t1.Before(times[len(times)-1]) {
		t1 = times[len(times)-1]
	}
	span := t1.Sub(t0)
	if span <= 0 {
		span = time.Second
	}
	// Cumulative counts at each distinct time (bucketed past the cap).
	type pt struct {
		at time.Time
		n  int
	}
	var pts []pt
	bucket := time.Duration(0)
	if len(times) > maxChartPoints {
		bucket = span / maxChartPoints
	}
	for i, t := range times {
		if bucket > 0 {
			t = t0.Add(t.Sub(t0) / bucket * bucket)
		}
		if len(pts) > 0 && pts[len(pts)-1].at.Equal(t) {
			pts[len(pts)-1].n = i + 1
			continue
		}
		pts = append(pts, pt{t, i + 1})
	}
	c.YMax = len(times)
	plotW, plotH := float64(c.W-c.Left-16), float64(c.Bottom-16)
	x := func(t time.Time) float64 { return float64(c.Left) + plotW*float64(t.Sub(t0))/float64(span) }
	y := func(n int) float64 { return float64(c.Bottom) - plotH*float64(n)/float64(c.YMax) }
	var line []string
	prevY := y(0)
	line = append(line, fmt.Sprintf("%.1f,%.1f", x(t0), prevY))
	for _, p := range pts {
		px, py := x(p.at), y(p.n)
		line = append(line, fmt.Sprintf("%.1f,%.1f", px, prevY), fmt.Sprintf("%.1f,%.1f", px, py))
		prevY = py
		c.Points = append(c.Points, chartPoint{X: px, Y: py, N: p.n, Label: p.at.UTC().Format(time.RFC3339) + ": " + strconv.Itoa(p.n) + " devices"})
	}
	line = append(line, fmt.Sprintf("%.1f,%.1f", x(t1), prevY))
	c.Line = strings.Join(line, " ")
	c.XMin, c.XMax = t0.UTC().Format("2006-01-02 15:04Z"), t1.UTC().Format("2006-01-02 15:04Z")
	return c
}

package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/server/store"
)

// TestTenants: one organization's operators and tokens cannot read or
// touch another's devices; a grant shows one phase of one group's devices
// to another organization, and nothing else.
func TestTenants(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		fs := newFleetServer(t, dsn, FleetOptions{}, nil, "")
		ctx := context.Background()
		// Two companies: the default org owns d1, d2; "rival" owns r1.
		rival, err := fs.db.CreateOrg(ctx, "rival", 0)
		if err != nil {
			t.Fatal(err)
		}
		rivalJoin, _ := fs.db.CreateJoinToken(ctx, rival.ID, "factory")
		if _, err := fs.db.CreateOrg(ctx, "installer", 0); err != nil {
			t.Fatal(err)
		}
		d1, d2, r1 := fs.device(fs.join), fs.device(fs.join), fs.device(rivalJoin)
		for _, d := range []*device{d1, d2, r1} {
			body := statusBody(d, map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "idle"}},
				map[string]any{"phase": "done", "version": "1.0.0"})
			if code, b := fs.post(d, d.id.ID, body); code != http.StatusNoContent {
				t.Fatalf("report: %d %s", code, b)
			}
		}
		mine, theirs := fs.token("default", store.RoleAdmin), fs.token("rival", store.RoleAdmin)
		list := func(tok, org string) (int, string) {
			return fs.api(tok, http.MethodGet, "/v1/orgs/"+org+"/devices", nil)
		}
		if code, b := list(mine, "default"); code != 200 || !strings.Contains(b, d1.id.ID) || !strings.Contains(b, d2.id.ID) || strings.Contains(b, r1.id.ID) {
			t.Errorf("default lists: %d %s", code, b)
		}
		if code, b := list(theirs, "rival"); code != 200 || !strings.Contains(b, r1.id.ID) || strings.Contains(b, d1.id.ID) {
			t.Errorf("rival lists: %d %s", code, b)
		}
		// Cross-tenant reads: the rival's token on our org, and on our device
		// through its own org.
		for _, c := range []struct {
			name, path string
			want       int
		}{
			{"list another org", "/v1/orgs/default/devices", http.StatusForbidden},
			{"device of another org", "/v1/orgs/default/devices/" + d1.id.ID, http.StatusForbidden},
			{"our device through the rival's org", "/v1/orgs/rival/devices/" + d1.id.ID, http.StatusNotFound},
			{"its events", "/v1/orgs/rival/devices/" + d1.id.ID + "/events", http.StatusNotFound},
			{"its attestation", "/v1/orgs/rival/devices/" + d1.id.ID + "/attestation", http.StatusNotFound},
			{"another org's audit", "/v1/orgs/default/audit", http.StatusForbidden},
			{"no such org", "/v1/orgs/nope/devices", http.StatusForbidden},
		} {
			code, b := fs.api(theirs, http.MethodGet, c.path, nil)
			if code != c.want || !oneLineError(b) || strings.Contains(b, `"devices"`) {
				t.Errorf("%s: %d %s; want %d", c.name, code, b, c.want)
			}
		}
		if code, b := fs.api(theirs, http.MethodPut, "/v1/orgs/rival/devices/"+d1.id.ID+"/groups", `{"groups":["x"]}`); code != http.StatusNotFound {
			t.Errorf("rival sets our device's groups: %d %s", code, b)
		}
		if code, _ := fs.api("plumbtok_forged", http.MethodGet, "/v1/orgs/default/devices", nil); code != http.StatusUnauthorized {
			t.Errorf("unknown token: %d, want 401", code)
		}
		if code, _ := fs.do(fs.hs.Client(), http.MethodGet, "/v1/orgs/default/devices", nil); code != http.StatusUnauthorized {
			t.Errorf("no credentials: %d, want 401", code)
		}

		// A grant: the installer sees phase 1 of group line-2 only.
		if code, b := fs.api(mine, http.MethodPut, "/v1/orgs/default/devices/"+d2.id.ID+"/groups", `{"groups":["line-2"]}`); code != http.StatusNoContent {
			t.Fatalf("set groups: %d %s", code, b)
		}
		if code, b := fs.api(mine, http.MethodPost, "/v1/orgs/default/grants", `{"org":"installer","phase":"provisioning","group":"line-2"}`); code != http.StatusNoContent {
			t.Fatalf("grant: %d %s", code, b)
		}
		inst := fs.token("installer", store.RoleViewer)
		code, b := list(inst, "installer")
		if code != 200 || !strings.Contains(b, d2.id.ID) || strings.Contains(b, d1.id.ID) || strings.Contains(b, `"version"`) {
			t.Errorf("installer lists: %d %s; want d2 only, without its OS version", code, b)
		}
		code, b = fs.api(inst, http.MethodGet, "/v1/orgs/installer/devices/"+d2.id.ID+"/events", nil)
		if code != 200 || !strings.Contains(b, `"install"`) || strings.Contains(b, `"update"`) {
			t.Errorf("installer reads d2's history: %d %s; want install entries only", code, b)
		}
		if code, _ := fs.api(inst, http.MethodGet, "/v1/orgs/installer/devices/"+d2.id.ID+"/attestation", nil); code != http.StatusNotFound {
			t.Errorf("installer reads d2's attestation: %d, want 404", code)
		}
		if code, _ := fs.api(inst, http.MethodPut, "/v1/orgs/installer/devices/"+d2.id.ID+"/groups", `{"groups":[]}`); code != http.StatusForbidden {
			t.Errorf("installer (viewer) sets groups: %d, want 403", code)
		}

		// Roles: a viewer cannot make tokens; an admin can, and it is audited.
		viewer := fs.token("default", store.RoleViewer)
		if code, b := fs.api(viewer, http.MethodPost, "/v1/orgs/default/tokens", `{"name":"ci","role":"admin"}`); code != http.StatusForbidden || !strings.Contains(b, "admin role") {
			t.Errorf("viewer makes a token: %d %s", code, b)
		}
		if code, b := fs.api(mine, http.MethodPost, "/v1/orgs/default/tokens", `{"name":"ci","role":"viewer"}`); code != http.StatusCreated || !strings.Contains(b, "plumbtok_") {
			t.Errorf("admin makes a token: %d %s", code, b)
		}
		// Bad input: one line each, the right status.
		for _, c := range []struct {
			method, path, body string
			want               int
		}{
			{http.MethodPost, "/v1/orgs/default/tokens", `{"name":"` + strings.Repeat("x", maxAPIBody) + `"}`, http.StatusRequestEntityTooLarge},
			{http.MethodPost, "/v1/orgs/default/tokens", `{"name":"ci","role":"god"}`, http.StatusBadRequest},
			{http.MethodPost, "/v1/orgs/default/tokens", `{"name":"ci","role":"viewer","extra":1}`, http.StatusBadRequest},
			{http.MethodPost, "/v1/orgs/default/grants", `{"org":"nope","phase":"os"}`, http.StatusNotFound},
			{http.MethodPost, "/v1/orgs/default/grants", `{"org":"rival","phase":"everything"}`, http.StatusBadRequest},
			{http.MethodGet, "/v1/orgs/default/devices?limit=-1", "", http.StatusBadRequest},
			{http.MethodGet, "/v1/orgs/default/devices/nosuchdevice", "", http.StatusNotFound},
			{http.MethodDelete, "/v1/orgs/default/devices", "", http.StatusMethodNotAllowed},
			{http.MethodGet, "/v1/nothing", "", http.StatusNotFound},
		} {
			var body any
			if c.body != "" {
				body = c.body
			}
			if code, b := fs.api(mine, c.method, c.path, body); code != c.want || !oneLineError(b) {
				t.Errorf("%s %s: %d %s; want %d with one error line", c.method, c.path, code, truncate(b, 200), c.want)
			}
		}
		if code, b := fs.api(mine, http.MethodGet, "/v1/orgs/default/audit", nil); code != 200 || !strings.Contains(b, `"token.create"`) || !strings.Contains(b, `"grant.add"`) || !strings.Contains(b, `"device.groups"`) {
			t.Errorf("audit: %d %s", code, b)
		}
		// The organization's lists: each under its key, with what the
		// steps above made (line-2 is d2's group, ci the token; default
		// holds no grant: an empty list, not null).
		for _, c := range []struct{ path, key, want string }{
			{"groups", "groups", `"line-2"`},
			{"releases", "releases", `[`},
			{"tokens", "tokens", `"ci"`},
			{"grants", "grants_held", `[]`},
		} {
			code, b := fs.api(mine, http.MethodGet, "/v1/orgs/default/"+c.path, nil)
			if code != 200 || !strings.HasPrefix(b, `{"`+c.key+`":`) || !strings.Contains(b, c.want) {
				t.Errorf("GET %s: %d %s; want 200 {%q: ...%s...}", c.path, code, truncate(b, 200), c.key, c.want)
			}
		}
		instAdmin := fs.token("installer", store.RoleAdmin)
		if code, b := fs.api(instAdmin, http.MethodGet, "/v1/orgs/installer/grants", nil); code != 200 || !strings.Contains(b, `"provisioning"`) || !strings.Contains(b, `"line-2"`) {
			t.Errorf("the installer's grants: %d %s; want default's provisioning grant on line-2", code, b)
		}
		if code, b := fs.api(theirs, http.MethodGet, "/v1/orgs/default/groups", nil); code != http.StatusForbidden || strings.Contains(b, "line-2") {
			t.Errorf("the rival lists our groups: %d %s; want 403", code, b)
		}
	})
}

// TestSessions: a user logs in with a password (argon2id), the session
// cookie reads, and a write without the CSRF token is refused.
func TestSessions(t *testing.T) {
	fs := newFleetServer(t, "", FleetOptions{}, nil, "")
	ctx := context.Background()
	org, _ := fs.db.OrgByName(ctx, "default")
	hash, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	u, err := fs.db.CreateUser(ctx, "alice", hash)
	if err != nil {
		t.Fatal(err)
	}
	fs.db.SetRole(ctx, u.ID, org.ID, store.RoleAdmin)
	jar, _ := cookiejar.New(nil)
	hc := *fs.hs.Client()
	hc.Jar = jar
	if code, b := fs.do(&hc, http.MethodPost, "/v1/login", `{"user":"alice","password":"wrong password"}`); code != http.StatusUnauthorized || !oneLineError(b) {
		t.Errorf("wrong password: %d %s", code, b)
	}
	code, b := fs.do(&hc, http.MethodPost, "/v1/login", `{"user":"alice","password":"correct horse battery"}`)
	var login struct {
		CSRF string `json:"csrf"`
	}
	if code != 200 || json.Unmarshal([]byte(b), &login) != nil || login.CSRF == "" {
		t.Fatalf("login: %d %s", code, b)
	}
	if code, b := fs.do(&hc, http.MethodGet, "/v1/orgs/default/devices", nil); code != 200 {
		t.Errorf("read with the session: %d %s", code, b)
	}
	body := `{"name":"ci","role":"viewer"}`
	if code, b := fs.do(&hc, http.MethodPost, "/v1/orgs/default/tokens", body, "Content-Type", "application/json"); code != http.StatusForbidden || !strings.Contains(b, "CSRF") {
		t.Errorf("write without CSRF token: %d %s", code, b)
	}
	if code, b := fs.do(&hc, http.MethodPost, "/v1/orgs/default/tokens", body, "Content-Type", "application/json", CSRFHeader, login.CSRF); code != http.StatusCreated {
		t.Errorf("write with CSRF token: %d %s", code, b)
	}
	if code, _ := fs.do(&hc, http.MethodPost, "/v1/logout", nil, CSRFHeader, login.CSRF); code != http.StatusNoContent {
		t.Errorf("logout: %d", code)
	}
	if code, _ := fs.do(&hc, http.MethodGet, "/v1/orgs/default/devices", nil); code != http.StatusUnauthorized {
		t.Errorf("read after logout: %d, want 401", code)
	}
	if CheckPassword(hash, "correct horse batterz") || !CheckPassword(hash, "correct horse battery") || !strings.HasPrefix(hash, "$argon2id$") {
		t.Errorf("CheckPassword is wrong for %s", hash)
	}
}

package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/server/store"
)

// FuzzPage: any path under /ui/, query and form body, from a viewer of
// "default" (API token) or with no credentials, is answered with a page
// or one error line and its status, never a 5xx (the database is up) and
// never a panic.
func FuzzPage(f *testing.F) {
	fz := newFuzzServer(f)
	org, err := fz.s.Store().OrgByName(context.Background(), "default")
	if err != nil {
		f.Fatal(err)
	}
	_, viewer, err := fz.s.Store().CreateToken(context.Background(), org.ID, "fuzz-viewer", store.RoleViewer, 0)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		m       uint8
		path, q string
		body    string
	}{
		{0, "o/default/", "", ""},
		{0, "o/default/devices", "q=a&group=g&verdict=failed&state=idle&limit=2&after=x", ""},
		{0, "o/default/devices/X", "", ""},
		{0, "o/default/releases/qemu-x86_64/1.0.0", "done=pause", ""},
		{1, "o/default/releases/qemu-x86_64/1.0.0/waves", "", "csrf=x&group=canary&waves=10%25%40now"},
		{1, "login", "", "user=a&password=b&csrf=c"},
		{1, "logout", "", "csrf=c"},
		{2, "o/default/audit", "limit=-1", ""},
		{0, "static/style.css", "", ""},
	} {
		f.Add(s.m, s.path, s.q, s.body, true)
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete}
	f.Fuzz(func(t *testing.T, m uint8, path, query, body string, auth bool) {
		path = strings.ReplaceAll(path, "X", fz.id.ID)
		method := methods[int(m)%len(methods)]
		req, err := http.NewRequest(method, "https://fleet.test/ui/", strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.URL.Path = "/ui/" + path
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth {
			req.Header.Set("Authorization", "Bearer "+viewer)
		}
		rec := httptest.NewRecorder()
		fz.s.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q ?%q: %d %s", method, path, query, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && method != http.MethodHead {
			b := rec.Body.String()
			_, rest, ok := strings.Cut(b, `data-test="error"`)
			line, _, _ := strings.Cut(rest, "</p>")
			if !ok || strings.Contains(line, "\n") {
				t.Fatalf("%s %q: %d without one error line: %.500s", method, path, rec.Code, b)
			}
		}
	})
}

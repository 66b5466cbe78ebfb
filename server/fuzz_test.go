package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/updater/identity"
)

// fuzzServer is a fleet server (SQLite) called in-process, and a joined
// device whose client certificate the requests carry, as after a TLS
// handshake.
type fuzzServer struct {
	s     *Server
	id    *identity.Identity
	state *tls.ConnectionState
	admin string
}

func newFuzzServer(t testing.TB) *fuzzServer {
	dir := makeRepo(t).dir
	s, err := New(Options{Dir: dir, CertDir: filepath.Join(dir, "tls"), Fleet: &FleetOptions{Bootstrap: true, PendingRate: 1e6, JoinRate: 1e6}, Attest: &AttestOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := id.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	org, err := s.Store().OrgByName(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store().AddDevice(ctx, &store.Device{ID: id.ID, OrgID: org.ID, PublicKey: id.PublicKey, JoinedBy: "fuzz"}); err != nil {
		t.Fatal(err)
	}
	_, admin, err := s.Store().CreateToken(ctx, org.ID, "fuzz", store.RoleAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &fuzzServer{s: s, id: id, state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, admin: admin}
}

// serve runs one request and checks the answer's contract: never a 5xx
// (the database is up), and every error one JSON line.
func (fz *fuzzServer) serve(t *testing.T, req *http.Request) *httptest.ResponseRecorder {
	req.TLS = fz.state
	rec := httptest.NewRecorder()
	fz.s.Handler().ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var p struct {
			Error string `json:"error"`
		}
		b := bytes.TrimSpace(rec.Body.Bytes())
		if json.Unmarshal(b, &p) != nil || p.Error == "" || strings.Contains(p.Error, "\n") || bytes.Count(b, []byte("\n")) > 0 {
			t.Fatalf("%s %s: %d with %q; want one JSON error line", req.Method, req.URL, rec.Code, b)
		}
	}
	return rec
}

// FuzzStatusReport: any body posted as the device's status report is
// stored (204) or refused with one line (4xx); a stored one reads back.
func FuzzStatusReport(f *testing.F) {
	fz := newFuzzServer(f)
	f.Add([]byte(`{"device":{"id":"X"},"status":{"update":{"phase":"trial","version":"2.0.0","bad":{"1.0":"boom"}}},"install":{"phase":"done"}}`))
	f.Add([]byte(`{"device":{"id":"X"},"status":{"release":{"hardware":"q","version":"1"},"update":{"event":"rolled back from 2: x"}}}`))
	f.Add([]byte(`{"device":{"id":"X"},"status":{"workloads":{"group":"g","containers":[{"name":"a","state":"running"}]}}}`))
	f.Add([]byte(`nope`))
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.ReplaceAll(body, []byte(`"X"`), []byte(`"`+fz.id.ID+`"`))
		req := httptest.NewRequest(http.MethodPost, "/v1/devices/"+fz.id.ID+"/status", bytes.NewReader(body))
		rec := fz.serve(t, req)
		if rec.Code == http.StatusNoContent {
			d, err := fz.s.Store().Device(context.Background(), fz.id.ID)
			if err != nil || !json.Valid(d.Report) {
				t.Fatalf("stored report does not read back: %v %q", err, d.Report)
			}
		} else if rec.Code/100 != 4 {
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// FuzzAttestRequests: any body or query on the attestation endpoints, as
// the device, is answered with one line and never a 5xx.
func FuzzAttestRequests(f *testing.F) {
	fz := newFuzzServer(f)
	f.Add(uint8(0), []byte(`{"device_id":"X","ek_public":"AAAA","ak_public":"AAAA"}`))
	f.Add(uint8(1), []byte(`{"device_id":"X","secret":"AAAA"}`))
	f.Add(uint8(2), []byte(`{"version":1,"device_id":"X","nonce":"AAAA","quote":{}}`))
	f.Add(uint8(3), []byte(`X`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		body = bytes.ReplaceAll(body, []byte(`X`), []byte(fz.id.ID))
		var req *http.Request
		switch which % 4 {
		case 0:
			req = httptest.NewRequest(http.MethodPost, "/v1/attest/enroll", bytes.NewReader(body))
		case 1:
			req = httptest.NewRequest(http.MethodPost, "/v1/attest/activate", bytes.NewReader(body))
		case 2:
			req = httptest.NewRequest(http.MethodPost, "/v1/attest/evidence", bytes.NewReader(body))
		default:
			req = httptest.NewRequest(http.MethodGet, "/v1/attest/nonce", nil)
			req.URL.RawQuery = "device=" + string(body)
		}
		fz.serve(t, req)
	})
}

// FuzzOperatorAPI: any method, path, query and body an admin sends to
// the operator API is answered with one line and never a 5xx.
func FuzzOperatorAPI(f *testing.F) {
	fz := newFuzzServer(f)
	for _, s := range []struct{ m, p, b string }{
		{"GET", "/v1/orgs/default/devices?q=a&limit=5", ""},
		{"GET", "/v1/orgs/default/devices/X/events?after=1", ""},
		{"PUT", "/v1/orgs/default/devices/X/groups", `{"groups":["a","b"]}`},
		{"POST", "/v1/orgs/default/tokens", `{"name":"ci","role":"viewer","expires_in":"1h"}`},
		{"POST", "/v1/orgs/default/grants", `{"org":"default","phase":"os"}`},
		{"POST", "/v1/orgs/default/users", `{"name":"bob","password":"0123456789","role":"viewer"}`},
		{"POST", "/v1/orgs/default/join-tokens", `{"name":"line-1"}`},
		{"POST", "/v1/login", `{"user":"bob","password":"x"}`},
		{"DELETE", "/v1/orgs/default/tokens/abc", ""},
	} {
		f.Add(s.m, s.p, []byte(s.b))
	}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		switch method {
		case "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD":
		default:
			return // net/http refuses other methods before a handler
		}
		target = strings.ReplaceAll(target, "X", fz.id.ID)
		if !strings.HasPrefix(target, "/v1/") || strings.ContainsAny(target, " \r\n\x00#") {
			return
		}
		if strings.Contains(target, "/users") && bytes.Contains(body, []byte("password")) {
			return // each new user costs an argon2id hash (19 MiB): not what this fuzzes
		}
		req, err := http.NewRequest(method, "https://fleet"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+fz.admin)
		req.Header.Set("Content-Type", "application/json")
		fz.serve(t, req)
	})
}

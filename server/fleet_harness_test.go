package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// fleetServer is plumb serve's handler over real HTTPS on 127.0.0.1 (TLS
// asking for client certificates, as Serve does), on a real database.
type fleetServer struct {
	t    *testing.T
	srv  *Server
	hs   *httptest.Server
	db   *store.Store
	join string // the bootstrap organization's join token
	dir  string
}

// eachDB runs f on SQLite and on a real PostgreSQL.
func eachDB(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) {
		pg := testutil.Postgres(t)
		f(t, pg.DSN)
	})
}

func newFleetServer(t *testing.T, dsn string, fo FleetOptions, att *AttestOptions, repoDir string) *fleetServer {
	t.Helper()
	if repoDir == "" {
		repoDir = makeRepo(t).dir
	}
	fo.DB, fo.Bootstrap = dsn, true
	return startFleetServer(t, Options{Dir: repoDir, CertDir: filepath.Join(t.TempDir(), "tls"), Fleet: &fo, Attest: att})
}

// startFleetServer serves o (a fleet with Bootstrap on) over HTTPS that asks
// for client certificates, as plumb serve does.
func startFleetServer(t *testing.T, o Options) *fleetServer {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	tok, err := os.ReadFile(filepath.Join(o.Dir, JoinTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &fleetServer{t: t, srv: s, hs: hs, db: s.Store(), join: strings.TrimSpace(string(tok)), dir: o.Dir}
}

// device is a device identity (a key file) and its mutual-TLS client.
type device struct {
	id *identity.Identity
	hc *http.Client
}

func (fs *fleetServer) device(joinToken string) *device {
	fs.t.Helper()
	id, err := identity.FromFile(filepath.Join(fs.t.TempDir(), "identity.key"))
	if err != nil {
		fs.t.Fatal(err)
	}
	hc, err := report.DeviceClient(fs.hs.Client(), id, joinToken)
	if err != nil {
		fs.t.Fatal(err)
	}
	return &device{id: id, hc: hc}
}

// do sends a request and returns the status and body.
func (fs *fleetServer) do(hc *http.Client, method, path string, body any, hdr ...string) (int, string) {
	fs.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, fs.hs.URL+path, rd)
	if err != nil {
		fs.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		fs.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// statusBody is a report as plumbd sends it.
func statusBody(d *device, status any, install any) []byte {
	b, _ := json.Marshal(report.Body{Device: report.Device{ID: d.id.ID, PublicKey: d.id.PublicKey}, Status: status, Install: install})
	return b
}

// post posts a status report for id with d's client.
func (fs *fleetServer) post(d *device, id string, body []byte) (int, string) {
	return fs.do(d.hc, http.MethodPost, "/v1/devices/"+id+"/status", body, "Content-Type", "application/json")
}

// token makes an API token for org with role.
func (fs *fleetServer) token(orgName, role string) string {
	fs.t.Helper()
	org, err := fs.db.OrgByName(context.Background(), orgName)
	if err != nil {
		fs.t.Fatal(err)
	}
	_, secret, err := fs.db.CreateToken(context.Background(), org.ID, "test-"+role, role, 0)
	if err != nil {
		fs.t.Fatal(err)
	}
	return secret
}

// api calls the operator API with an API token.
func (fs *fleetServer) api(token, method, path string, body any) (int, string) {
	return fs.do(fs.hs.Client(), method, path, body, "Authorization", "Bearer "+token, "Content-Type", "application/json")
}

// oneLineError checks that body is {"error": one line}.
func oneLineError(body string) bool {
	var p struct {
		Error string `json:"error"`
	}
	return json.Unmarshal([]byte(body), &p) == nil && p.Error != "" && !strings.Contains(p.Error, "\n")
}

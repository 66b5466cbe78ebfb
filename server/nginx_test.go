package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// TestNginxMatches serves the same tree with plumb serve and with nginx
// configured as docs/nginx.md says, and checks that what devices rely on —
// Range, If-Range, If-None-Match, Cache-Control — is answered the same.
func TestNginxMatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx (not -short)")
	}
	nginx := testutil.Nginx(t)
	r := makeRepo(t)
	certDir := filepath.Join(t.TempDir(), "tls")
	s, err := New(Options{Dir: r.dir, CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	ours := "https://" + l.Addr().String()
	theirs := testutil.StartNginx(t, nginx, r.dir, certDir)

	caPEM, err := os.ReadFile(s.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}

	// etagOf fetches the server's own ETag for path.
	etagOf := func(base, path string) string {
		resp, _ := do(t, c, "HEAD", base+path, nil)
		e := resp.Header.Get("ETag")
		if e == "" || strings.HasPrefix(e, "W/") {
			t.Fatalf("%s%s: ETag %q, want a strong ETag", base, path, e)
		}
		return e
	}
	n := len(r.targetData)
	tests := []struct {
		name, method, path string
		hdr                map[string]string // "ETAG" is replaced by the server's own ETag
		compare            []string          // headers that must be equal
		wantStatus         int
	}{
		{"full", "GET", r.target, nil, []string{"Content-Length", "Content-Type", "Cache-Control", "Accept-Ranges"}, 200},
		{"head", "HEAD", r.target, nil, []string{"Content-Length", "Content-Type", "Cache-Control"}, 200},
		{"range", "GET", r.target, map[string]string{"Range": "bytes=10-19"}, []string{"Content-Range", "Content-Length"}, 206},
		{"suffix range", "GET", r.target, map[string]string{"Range": "bytes=-5"}, []string{"Content-Range", "Content-Length"}, 206},
		{"open range", "GET", r.target, map[string]string{"Range": fmt.Sprintf("bytes=%d-", n-100)}, []string{"Content-Range", "Content-Length"}, 206},
		{"unsatisfiable", "GET", r.target, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", n+10, n+20)}, []string{"Content-Range"}, 416},
		{"if-range match", "GET", r.target, map[string]string{"Range": "bytes=0-9", "If-Range": "ETAG"}, []string{"Content-Range"}, 206},
		{"if-range stale", "GET", r.target, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`}, []string{"Content-Length"}, 200},
		{"poll unchanged", "GET", "/metadata/timestamp.json", map[string]string{"If-None-Match": "ETAG"}, []string{"Cache-Control"}, 304},
		{"poll changed", "GET", "/metadata/timestamp.json", map[string]string{"If-None-Match": `"old"`}, []string{"Cache-Control", "Content-Type", "Content-Length"}, 200},
		{"target unchanged", "GET", r.target, map[string]string{"If-None-Match": "ETAG"}, []string{"Cache-Control"}, 304},
		{"root.json", "GET", "/metadata/root.json", nil, []string{"Cache-Control", "Content-Type"}, 200},
		{"versioned root", "GET", "/metadata/1.root.json", nil, []string{"Cache-Control"}, 200},
		{"snapshot", "GET", "/metadata/7.snapshot.json", nil, []string{"Cache-Control"}, 200},
		{"plain target name", "GET", "/targets/plain-name.bin", nil, []string{"Cache-Control"}, 200},
		{"dotfile", "GET", "/metadata/.hidden", nil, nil, 404},
		{"missing", "GET", "/metadata/9.snapshot.json", nil, nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type answer struct {
				resp *http.Response
				body []byte
			}
			var got [2]answer
			for i, base := range []string{ours, theirs} {
				hdr := map[string]string{}
				for k, v := range tt.hdr {
					if v == "ETAG" {
						v = etagOf(base, tt.path)
					}
					hdr[k] = v
				}
				got[i].resp, got[i].body = do(t, c, tt.method, base+tt.path, hdr)
				if got[i].resp.StatusCode != tt.wantStatus {
					t.Errorf("%s %s%s %v: status %d, want %d", tt.method, base, tt.path, hdr, got[i].resp.StatusCode, tt.wantStatus)
				}
			}
			o, x := got[0], got[1]
			if srv := x.resp.Header.Get("Server"); !strings.HasPrefix(srv, "nginx") {
				t.Fatalf("second server says Server: %q, want nginx", srv)
			}
			if tt.wantStatus < 400 && !bytes.Equal(o.body, x.body) {
				t.Errorf("bodies differ: plumb serve %d bytes, nginx %d bytes", len(o.body), len(x.body))
			}
			for _, h := range tt.compare {
				if a, b := o.resp.Header.Get(h), x.resp.Header.Get(h); a != b {
					t.Errorf("%s: plumb serve %q, nginx %q", h, a, b)
				}
			}
		})
	}

	// Escapes: neither serves anything outside the repository (nginx may
	// answer 400 or 403 where plumb serve says 404).
	for _, p := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/targets/%2e%2e/%2e%2e/keys/root.key", "/targets/link"} {
		for _, base := range []string{ours, theirs} {
			resp, body := do(t, c, "GET", base+p, nil)
			if resp.StatusCode < 400 || bytes.Contains(body, []byte("outside")) || bytes.Contains(body, []byte("private")) {
				t.Errorf("GET %s%s: status %d, %d bytes; want an error status", base, p, resp.StatusCode, len(body))
			}
		}
	}
}

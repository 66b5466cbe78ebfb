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
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
)

// nginxServerBlock returns the server block of docs/nginx.md.
func nginxServerBlock(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "docs", "nginx.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```nginx\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 || !strings.Contains(block, "server {") {
		t.Fatal("docs/nginx.md: no ```nginx block with a server block")
	}
	return block
}

// startNginx runs nginx (one process, in the foreground) with the server
// block of docs/nginx.md, serving r with the certificates in certDir, and
// returns its base URL. The process is ended by PID at cleanup.
func startNginx(t *testing.T, nginx string, r testRepo, certDir string) string {
	t.Helper()
	tmp := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	block := nginxServerBlock(t)
	for old, new := range map[string]string{
		"listen 443 ssl http2;":            "listen " + addr + " ssl http2;",
		"/srv/plumb/tls/":                  certDir + "/",
		"/srv/plumb/repository":            filepath.Join(r.dir, "repository"),
		"server_name updates.example.com;": "server_name localhost;",
	} {
		if !strings.Contains(block, old) {
			t.Fatalf("docs/nginx.md server block lacks %q", old)
		}
		block = strings.ReplaceAll(block, old, new)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, tmp, block)
	confPath := filepath.Join(tmp, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(nginx, "-p", tmp, "-e", filepath.Join(tmp, "error.log"), "-c", confPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(tmp, "error.log"))
			t.Fatalf("nginx exited: %v\n%s%s\nconfig:\n%s", err, out.String(), log, conf)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return "https://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s after 10 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNginxMatches serves the same tree with plumb serve and with nginx
// configured as docs/nginx.md says, and checks that what devices rely on —
// Range, If-Range, If-None-Match, Cache-Control — is answered the same.
func TestNginxMatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx (not -short)")
	}
	nginx := "/usr/sbin/nginx" // not on every user's PATH
	if _, err := os.Stat(nginx); err != nil {
		nginx = testutil.RequireTool(t, "nginx", "nginx-light")
	}
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
	theirs := startNginx(t, nginx, r, certDir)

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

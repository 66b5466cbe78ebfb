package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testRepo is a small repository tree in the layout of `plumb repo init`,
// plus things the server must not serve.
type testRepo struct {
	dir        string // the repo dir (holds repository/)
	target     string // URL path of the rootfs target
	targetData []byte
	timestamp  []byte
}

func makeRepo(t testing.TB) testRepo {
	t.Helper()
	dir := t.TempDir()
	r := testRepo{dir: dir}
	rng := rand.New(rand.NewPCG(1, 2))
	r.targetData = make([]byte, 4096)
	for i := range r.targetData {
		r.targetData[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(r.targetData)
	r.target = "/targets/qemu-x86_64/1.0.0/" + hex.EncodeToString(sum[:]) + ".rootfs.sqfs"
	r.timestamp = []byte(`{"signed":{"_type":"timestamp","version":7},"signatures":[]}` + "\n")
	files := map[string][]byte{
		"repository/metadata/1.root.json":      []byte(`{"signed":{"_type":"root","version":1}}`),
		"repository/metadata/root.json":        []byte(`{"signed":{"_type":"root","version":1}}`),
		"repository/metadata/timestamp.json":   r.timestamp,
		"repository/metadata/7.snapshot.json":  []byte(`{"signed":{"_type":"snapshot","version":7}}`),
		"repository/metadata/7.targets.json":   []byte(`{"signed":{"_type":"targets","version":7}}`),
		"repository/metadata/.hidden":          []byte("hidden"),
		"repository/.secret":                   []byte("dotfile"),
		"repository" + r.target:                r.targetData,
		"repository/targets/plain-name.bin":    []byte("not content-addressed"),
		"secret.txt":                           []byte("outside the repository"),
		"keys/root.key":                        []byte("private"),
		"repository/targets/qemu-x86_64/x.txt": []byte("x"),
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink that leads out of the repository.
	if err := os.Symlink("../../secret.txt", filepath.Join(dir, "repository", "targets", "link")); err != nil {
		t.Fatal(err)
	}
	return r
}

func newServer(t *testing.T, r testRepo) *Server {
	t.Helper()
	s, err := New(Options{Dir: r.dir, CertDir: filepath.Join(t.TempDir(), "tls")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// plainClient does not ask for gzip, so bodies and lengths are the files'.
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, body
}

func TestRange(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	d := r.targetData
	n := len(d)
	tests := []struct {
		rng          string
		wantStatus   int
		wantBody     []byte
		wantContentR string
	}{
		{"", 200, d, ""},
		{"bytes=10-19", 206, d[10:20], fmt.Sprintf("bytes 10-19/%d", n)},
		{"bytes=-5", 206, d[n-5:], fmt.Sprintf("bytes %d-%d/%d", n-5, n-1, n)},
		{fmt.Sprintf("bytes=%d-", n-3), 206, d[n-3:], fmt.Sprintf("bytes %d-%d/%d", n-3, n-1, n)},
		{fmt.Sprintf("bytes=%d-%d", n+10, n+20), 416, nil, fmt.Sprintf("bytes */%d", n)},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.rng != "" {
				hdr["Range"] = tt.rng
			}
			resp, body := do(t, plainClient(), "GET", ts.URL+r.target, hdr)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET Range %q: status %d, want %d", tt.rng, resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Content-Range"); got != tt.wantContentR {
				t.Errorf("Content-Range = %q, want %q", got, tt.wantContentR)
			}
			if tt.wantStatus != 416 && !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body: got %d bytes, want %d bytes %x…", len(body), len(tt.wantBody), tt.wantBody[:min(8, len(tt.wantBody))])
			}
		})
	}
}

// TestIfRange: a resumed download with a stale ETag gets the whole file.
func TestIfRange(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	resp, _ := do(t, plainClient(), "HEAD", ts.URL+r.target, nil)
	etag := resp.Header.Get("ETag")
	tests := []struct {
		ifRange    string
		wantStatus int
		wantLen    int
	}{
		{etag, 206, 10},
		{`"stale"`, 200, len(r.targetData)},
	}
	for _, tt := range tests {
		resp, body := do(t, plainClient(), "GET", ts.URL+r.target, map[string]string{"Range": "bytes=0-9", "If-Range": tt.ifRange})
		if resp.StatusCode != tt.wantStatus || len(body) != tt.wantLen {
			t.Errorf("If-Range %s: status %d with %d bytes, want %d with %d", tt.ifRange, resp.StatusCode, len(body), tt.wantStatus, tt.wantLen)
		}
	}
}

func TestETag(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	sum := sha256.Sum256(r.timestamp)
	tests := []struct {
		path     string
		wantETag string // "" means: any strong ETag
	}{
		{"/metadata/timestamp.json", `"` + hex.EncodeToString(sum[:]) + `"`},
		{"/metadata/7.snapshot.json", ""},
		{r.target, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := do(t, plainClient(), "GET", ts.URL+tt.path, nil)
			etag := resp.Header.Get("ETag")
			if resp.StatusCode != 200 || len(body) == 0 {
				t.Fatalf("GET: status %d, %d bytes", resp.StatusCode, len(body))
			}
			if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
				t.Fatalf("ETag = %q, want a strong ETag", etag)
			}
			if tt.wantETag != "" && etag != tt.wantETag {
				t.Errorf("ETag = %s, want %s", etag, tt.wantETag)
			}
			resp, body = do(t, plainClient(), "GET", ts.URL+tt.path, map[string]string{"If-None-Match": etag})
			if resp.StatusCode != 304 || len(body) != 0 {
				t.Errorf("If-None-Match %s: status %d with %d body bytes, want 304 with none", etag, resp.StatusCode, len(body))
			}
			if got := resp.Header.Get("ETag"); got != etag {
				t.Errorf("304 ETag = %q, want %q", got, etag)
			}
			resp, _ = do(t, plainClient(), "GET", ts.URL+tt.path, map[string]string{"If-None-Match": `"other"`})
			if resp.StatusCode != 200 {
				t.Errorf("If-None-Match with another ETag: status %d, want 200", resp.StatusCode)
			}
		})
	}
}

// TestETagFollowsContent: a republished timestamp.json (write temp, rename)
// gets a new ETag, so a device's conditional poll sees the change.
func TestETagFollowsContent(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	url := ts.URL + "/metadata/timestamp.json"
	resp, _ := do(t, plainClient(), "GET", url, nil)
	old := resp.Header.Get("ETag")
	p := filepath.Join(r.dir, "repository", "metadata", "timestamp.json")
	next := []byte(`{"signed":{"_type":"timestamp","version":8},"signatures":[]}` + "\n")
	if err := os.WriteFile(p+".tmp", next, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, plainClient(), "GET", url, map[string]string{"If-None-Match": old})
	if resp.StatusCode != 200 || !bytes.Equal(body, next) {
		t.Fatalf("after republishing: status %d body %q, want 200 with the new file", resp.StatusCode, body)
	}
	sum := sha256.Sum256(next)
	if got, want := resp.Header.Get("ETag"), `"`+hex.EncodeToString(sum[:])+`"`; got != want {
		t.Errorf("ETag = %s, want %s", got, want)
	}
}

func TestCacheControl(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	tests := []struct {
		path string
		want string
	}{
		{"/metadata/timestamp.json", "no-cache"},
		{"/metadata/root.json", "no-cache"},
		{"/metadata/1.root.json", "max-age=31536000, immutable"},
		{"/metadata/7.snapshot.json", "max-age=31536000, immutable"},
		{"/metadata/7.targets.json", "max-age=31536000, immutable"},
		{r.target, "max-age=31536000, immutable"},
		{"/targets/plain-name.bin", "no-cache"},
	}
	for _, tt := range tests {
		resp, _ := do(t, plainClient(), "GET", ts.URL+tt.path, nil)
		if got := resp.Header.Get("Cache-Control"); resp.StatusCode != 200 || got != tt.want {
			t.Errorf("GET %s: status %d, Cache-Control %q, want 200 and %q", tt.path, resp.StatusCode, got, tt.want)
		}
	}
}

func TestCacheControlNames(t *testing.T) {
	h64 := strings.Repeat("ab", 32)
	tests := []struct {
		rel  string
		want string
	}{
		{"metadata/timestamp.json", cacheRevalidate},
		{"metadata/root.json", cacheRevalidate},
		{"metadata/snapshot.json", cacheRevalidate},
		{"metadata/12.root.json", cacheImmutable},
		{"metadata/3.apps.json", cacheImmutable},
		{"metadata/x.root.json", cacheRevalidate},
		{"metadata/3.json", cacheRevalidate},
		{"metadata/sub/3.root.json", cacheRevalidate},
		{"targets/hw/1/" + h64 + ".rootfs.sqfs", cacheImmutable},
		{"targets/hw/1/" + h64[:62] + ".rootfs.sqfs", cacheRevalidate},
		{"targets/hw/1/" + strings.Repeat("zz", 32) + ".rootfs.sqfs", cacheRevalidate},
		{"targets/hw/1/" + h64, cacheRevalidate},
		{"other/" + h64 + ".x", cacheRevalidate},
	}
	for _, tt := range tests {
		if got := cacheControl(tt.rel); got != tt.want {
			t.Errorf("cacheControl(%q) = %q, want %q", tt.rel, got, tt.want)
		}
	}
}

func TestNotServed(t *testing.T) {
	r := makeRepo(t)
	h := newServer(t, r).Handler()
	tests := []struct {
		method, target string
		want           int
	}{
		{"GET", "/../secret.txt", 404},
		{"GET", "/%2e%2e/secret.txt", 404},
		{"GET", "/%2E%2E/keys/root.key", 404},
		{"GET", "/metadata/..%2f..%2fsecret.txt", 404},
		{"GET", "/metadata/%2e%2e/%2e%2e/secret.txt", 404},
		{"GET", "/targets/../../keys/root.key", 404},
		{"GET", "/targets/link", 404}, // symlink out of the repository
		{"GET", "/.secret", 404},
		{"GET", "/metadata/.hidden", 404},
		{"GET", "/metadata/./root.json", 404},
		{"GET", "/metadata//root.json", 404},
		{"GET", "/", 404},
		{"GET", "/metadata/", 404},
		{"GET", "/metadata", 404}, // a directory
		{"GET", "/targets/qemu-x86_64/", 404},
		{"GET", "/metadata/nope.json", 404},
		{"GET", "/metadata/root.json%00", 404},
		{"POST", "/metadata/root.json", 405},
		{"PUT", "/metadata/root.json", 405},
		{"GET", "/metadata/root.json", 200},
		{"GET", "/targets/qemu-x86_64/x.txt", 200},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
		if rec.Code != tt.want {
			t.Errorf("%s %s: status %d, want %d (body %q)", tt.method, tt.target, rec.Code, tt.want, rec.Body.String())
		}
		if tt.want == 404 && strings.Contains(rec.Body.String(), "outside") {
			t.Errorf("%s %s: served the file outside the repository", tt.method, tt.target)
		}
	}
}

// TestNotServedOnTheWire sends request lines as written, so that no client
// library cleans the path first.
func TestNotServedOnTheWire(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	for _, target := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/targets/%2e%2e/%2e%2e/keys/root.key"} {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		resp, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		status, _, _ := strings.Cut(string(resp), "\r\n")
		if status != "HTTP/1.1 404 Not Found" || strings.Contains(string(resp), "outside") || strings.Contains(string(resp), "private") {
			t.Errorf("GET %s: %q, want 404 Not Found", target, status)
		}
	}
}

func TestHead(t *testing.T) {
	r := makeRepo(t)
	ts := httptest.NewServer(newServer(t, r).Handler())
	t.Cleanup(ts.Close)
	resp, body := do(t, plainClient(), "HEAD", ts.URL+r.target, nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD: status %d with %d body bytes, want 200 with none", resp.StatusCode, len(body))
	}
	if resp.ContentLength != int64(len(r.targetData)) {
		t.Errorf("HEAD Content-Length = %d, want %d", resp.ContentLength, len(r.targetData))
	}
	if resp.Header.Get("ETag") == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("HEAD headers %v: want an ETag and Accept-Ranges: bytes", resp.Header)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type = %q, want application/octet-stream", got)
	}
}

func TestStats(t *testing.T) {
	r := makeRepo(t)
	s := newServer(t, r)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	url := ts.URL + "/metadata/timestamp.json"
	resp, _ := do(t, plainClient(), "GET", url, nil)
	full := s.Stats()
	if full.Requests != 1 || full.NotModified != 0 || full.BytesOut < int64(len(r.timestamp)) || full.BytesOut > int64(len(r.timestamp))+500 {
		t.Errorf("after one GET of %d bytes: %+v", len(r.timestamp), full)
	}
	const polls = 10
	for range polls {
		do(t, plainClient(), "GET", url, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	}
	got := s.Stats()
	if got.Requests != 1+polls || got.NotModified != polls {
		t.Errorf("after %d conditional polls: %+v, want %d requests, %d not modified", polls, got, 1+polls, polls)
	}
	perPoll := (got.BytesOut - full.BytesOut) / polls
	t.Logf("idle poll (304) costs about %d bytes of response", perPoll)
	if perPoll <= 0 || perPoll > 400 {
		t.Errorf("idle poll costs %d response bytes, want a few hundred at most", perPoll)
	}
	do(t, plainClient(), "GET", ts.URL+r.target, map[string]string{"Range": "bytes=0-99"})
	if d := s.Stats().BytesOut - got.BytesOut; d < 100 || d > 100+500 {
		t.Errorf("a 100-byte range answer counted %d bytes", d)
	}
}

func TestNewBadInput(t *testing.T) {
	r := makeRepo(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{}, "no repository directory"},
		{"no repository", Options{Dir: t.TempDir()}, "expected a directory made by `plumb repo init`"},
		{"bad host", Options{Dir: r.dir, Hosts: []string{"not a host"}}, `host "not a host": expected an IP address or a DNS name`},
		{"empty label", Options{Dir: r.dir, Hosts: []string{"a..b"}}, `host "a..b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.CertDir = filepath.Join(t.TempDir(), "tls")
			_, err := New(tt.opts)
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("New: %v, want one line with ErrBadInput containing %q", err, tt.want)
			}
		})
	}
}

func TestDevCAReused(t *testing.T) {
	r := makeRepo(t)
	s1, err := New(Options{Dir: r.dir})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(r.dir, "tls", "ca.pem"); s1.CACertPath() != want {
		t.Errorf("CACertPath = %s, want the default %s", s1.CACertPath(), want)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(r.dir, "tls", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, srv := read("ca.pem"), read("server.pem")
	for _, k := range []string{"ca.key", "server.key"} {
		fi, err := os.Stat(filepath.Join(r.dir, "tls", k))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", k, err, fi.Mode().Perm())
		}
	}
	if _, err := New(Options{Dir: r.dir}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read("ca.pem"), ca) || !bytes.Equal(read("server.pem"), srv) {
		t.Errorf("second New changed the CA or the server certificate")
	}
	// New hosts: same CA, a new server certificate that names them.
	if _, err := New(Options{Dir: r.dir, Hosts: []string{"updates.example.com", "192.0.2.7"}}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read("ca.pem"), ca) {
		t.Errorf("New with other hosts replaced the CA")
	}
	if bytes.Equal(read("server.pem"), srv) {
		t.Errorf("New with other hosts kept the old server certificate")
	}
	leaf := parseCert(t, read("server.pem"))
	for _, h := range []string{"updates.example.com", "192.0.2.7"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("reissued certificate: %v", err)
		}
	}
	caCert := parseCert(t, ca)
	if !caCert.IsCA || caCert.NotAfter.Sub(caCert.NotBefore) < 10*365*24*time.Hour-2*time.Hour {
		t.Errorf("CA: IsCA %v, valid %v → %v; want a CA for 10 years", caCert.IsCA, caCert.NotBefore, caCert.NotAfter)
	}
	if caCert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA key algorithm %v, want ECDSA", caCert.PublicKeyAlgorithm)
	}
}

func parseCert(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatal("no certificate in PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServeTLS: a client that trusts only the CA file reaches the server at
// https://127.0.0.1, whose certificate also names 10.0.2.100; cancelling the
// context stops Serve.
func TestServeTLS(t *testing.T) {
	r := makeRepo(t)
	s := newServer(t, r)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	caPEM, err := os.ReadFile(s.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}}
	base := "https://" + l.Addr().String()
	resp, body := do(t, c, "GET", base+"/metadata/timestamp.json", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, r.timestamp) {
		t.Fatalf("GET over TLS: status %d body %q", resp.StatusCode, body)
	}
	leaf := resp.TLS.PeerCertificates[0]
	for _, h := range []string{"127.0.0.1", "localhost", "10.0.2.100"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}
	resp, body = do(t, c, "GET", base+r.target, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != 206 || !bytes.Equal(body, r.targetData[10:20]) {
		t.Errorf("Range over TLS (%s): status %d, %d bytes", resp.Proto, resp.StatusCode, len(body))
	}

	// Without the CA the server is not trusted.
	if _, err := (&http.Client{Transport: &http.Transport{}}).Get(base + "/metadata/root.json"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("client without the CA: err %v, want a certificate error", err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("Serve after cancel: %v, want nil", err)
		}
		t.Logf("Serve returned %v after cancel", time.Since(start).Round(time.Millisecond))
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Errorf("listener still accepts after Serve returned")
	}
}

// TestSlowClientCutOff: a client that sends its request slower than
// ReadTimeout, or idles longer than IdleTimeout, loses its connection,
// so slow clients cannot hold the server's connections.
func TestSlowClientCutOff(t *testing.T) {
	r := makeRepo(t)
	s, err := New(Options{Dir: r.dir, CertDir: filepath.Join(t.TempDir(), "tls"), ReadTimeout: time.Second, IdleTimeout: time.Second})
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
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c *tls.Conn) bool {
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // far past the server's 1 s
		_, err := io.ReadAll(c)
		return err == nil || !errors.Is(err, os.ErrDeadlineExceeded)
	}
	// A request whose body never finishes.
	slow := dial()
	fmt.Fprintf(slow, "POST /v1/devices/x/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	if !closed(slow) {
		t.Error("a request body slower than ReadTimeout kept its connection")
	}
	// An idle keep-alive connection.
	idle := dial()
	fmt.Fprintf(idle, "GET /metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n")
	if !closed(idle) {
		t.Error("an idle connection outlived IdleTimeout")
	}
}

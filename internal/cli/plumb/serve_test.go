package plumb

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/server"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runServeCmd runs `plumb serve ARGS` the way RunPlumb runs a verb.
func runServeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &cli.Env{Stdout: stdout, Stderr: stderr, Log: cli.NewLogger(stderr, false)}
	cmd := newServeCmd(e)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	if err != nil && cli.IsCobraUsageError(err) {
		err = cli.BadInput(err)
	}
	return cli.ExitCode(err, stderr, "plumb")
}

func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	meta := filepath.Join(dir, "repository", "metadata")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := []byte(`{"signed":{"_type":"timestamp"}}`)
	if err := os.WriteFile(filepath.Join(meta, "timestamp.json"), ts, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- runServeCmd(ctx, []string{dir, "--addr", "127.0.0.1:0", "--host", "updates.example.com"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-code
	})

	re := regexp.MustCompile(`(?m)^URL:\s+(https://\S+/)\s.*\nCA:\s+(\S+)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no URL and CA printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(stdout.String())
	}
	url, caPath := m[1], m[2]
	if want := filepath.Join(dir, "tls", "ca.pem"); caPath != want {
		t.Errorf("printed CA %s, want %s", caPath, want)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url + "metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, ts) {
		t.Fatalf("GET timestamp.json: status %d body %q", resp.StatusCode, body)
	}
	if err := resp.TLS.PeerCertificates[0].VerifyHostname("updates.example.com"); err != nil {
		t.Errorf("--host not in the certificate: %v", err)
	}
	if !strings.Contains(stderr.String(), "path=/metadata/timestamp.json status=200") {
		t.Errorf("access log on stderr = %q, want the request", stderr.String())
	}

	cancel()
	select {
	case got := <-code:
		code <- got // for the cleanup
		if got != cli.ExitOK {
			t.Errorf("exit code after Ctrl-C %d, want %d; stderr %q", got, cli.ExitOK, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
}

func TestServeBadInput(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "repository"), 0o755); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{t.TempDir()}, "expected a directory made by `plumb repo init`"},
		{[]string{repo, "--host", "bad name"}, `host "bad name"`},
		{[]string{repo, "--addr", "8443"}, `--addr "8443": expected HOST:PORT`},
		{[]string{}, "accepts 1 arg"},
		{[]string{repo, "--ek-ca", filepath.Join(repo, "no-such.pem")}, "--ek-ca: open"},
		{[]string{repo, "--ek-ca", notPEM}, "expected PEM certificates, found none"},
		{[]string{repo, "--wake-max", "0"}, "expected positive caps, a heartbeat and a timeout of at least 1s"},
		{[]string{repo, "--wake-timeout", "0s"}, "--wake-timeout 0s"},
		{[]string{repo, "--wake-heartbeat", "10ms"}, "--wake-heartbeat 10ms"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := runServeCmd(t.Context(), tt.args, &stdout, &stderr)
		msg := stderr.String()
		if code != cli.ExitBadInput {
			t.Errorf("serve %q: exit code %d, want %d; stderr %q", tt.args, code, cli.ExitBadInput, msg)
		}
		if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.want) {
			t.Errorf("serve %q: stderr = %q, want one line containing %q", tt.args, msg, tt.want)
		}
	}
}

// TestServePage: the first start of plumb serve makes the operator admin
// of "default" with a password in DIR/admin-password and prints the
// page's URL; that login opens the overview, and a wrong one does not.
func TestServePage(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "repository", "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- runServeCmd(ctx, []string{dir, "--addr", "127.0.0.1:0", "--access-log=false"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-code
	})
	re := regexp.MustCompile(`(?m)^Page:\s+(https://\S+/ui/)\s+\(log in as admin, password in (\S+)\)`)
	var m []string
	for deadline := time.Now().Add(30 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no page URL printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(stdout.String())
	}
	page, pwFile := m[1], m[2]
	if pwFile != filepath.Join(dir, server.AdminPasswordFile) {
		t.Errorf("password file %s, want %s", pwFile, filepath.Join(dir, server.AdminPasswordFile))
	}
	fi, err := os.Stat(pwFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin password file: %v, mode %v; want 0600", err, fi)
	}
	pw, _ := os.ReadFile(pwFile)
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	login := func(password string) (int, string) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		body := strings.NewReader(`{"user":"admin","password":` + strconv.Quote(password) + `}`)
		resp, err := c.Post(strings.TrimSuffix(page, "ui/")+"v1/login", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, ""
		}
		resp, err = c.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, html := login(strings.TrimSpace(string(pw))); status != http.StatusOK || !strings.Contains(html, `<h1 data-test="title">Overview</h1>`) {
		t.Errorf("admin's page: %d %.300s; want the overview", status, html)
	}
	if status, _ := login("wrong-password"); status != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", status)
	}
}

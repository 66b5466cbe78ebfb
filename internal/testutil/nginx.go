package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nginx returns the nginx binary: /usr/sbin/nginx (not on every user's
// PATH), else nginx on PATH; when there is none it fails with the install
// hint (skips under -short).
func Nginx(t testing.TB) string {
	t.Helper()
	const nginx = "/usr/sbin/nginx"
	if _, err := os.Stat(nginx); err == nil {
		return nginx
	}
	return RequireTool(t, "nginx", "nginx-light")
}

// NginxServerBlock returns the server block of docs/nginx.md.
func NginxServerBlock(t testing.TB) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "nginx.md"))
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

// StartNginx runs nginx (one process, in the foreground) with the server
// block of docs/nginx.md, serving repoDir/repository (repoDir is the
// directory `plumb repo init` made) with the certificate and key
// server.pem and server.key in certDir, on a free port of 127.0.0.1. It
// returns the base URL ("https://127.0.0.1:PORT"). The process is ended by
// PID at cleanup.
func StartNginx(t testing.TB, nginx, repoDir, certDir string) string {
	t.Helper()
	tmp := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	block := NginxServerBlock(t)
	for old, new := range map[string]string{
		"listen 443 ssl http2;":            "listen " + addr + " ssl http2;",
		"/srv/plumb/tls/":                  certDir + "/",
		"/srv/plumb/repository":            filepath.Join(repoDir, "repository"),
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

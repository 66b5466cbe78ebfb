package plumbd

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

func TestFetchCmd(t *testing.T) {
	const target = "qemu-x86_64/2.0.0/rootfs.sqfs"
	payload := bytes.Repeat([]byte("rootfs"), 5000)
	tests := []struct {
		name     string
		tls      bool
		tamper   bool
		args     func(repo, root, ca, out string) []string
		wantCode int
		wantErr  string
	}{
		{name: "https with --ca", tls: true, wantCode: 0},
		{name: "plain http", wantCode: 0},
		{name: "tampered target", tls: true, tamper: true, wantCode: 3, wantErr: "sha256 mismatch"},
		{name: "missing flag", args: func(repo, root, ca, out string) []string {
			return []string{"--repo", repo, "--root", root, "--output", out, target}
		}, wantCode: 2, wantErr: "metadata-dir"},
		{name: "bad repo URL", args: func(repo, root, ca, out string) []string {
			return []string{"--repo", "ftp://x", "--root", root, "--metadata-dir", filepath.Dir(out), "--output", out, target}
		}, wantCode: 2, wantErr: "expected an http:// or https:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fetchtest.NewRepo(t)
			r.AddTarget(target, payload, map[string]string{"kind": "full"})
			r.Publish()
			var srv *fetchtest.Server
			if tt.tls {
				srv = fetchtest.Serve(t, r.Dir)
			} else {
				srv = fetchtest.ServePlain(t, r.Dir)
			}
			dir := t.TempDir()
			root := filepath.Join(dir, "root.json")
			os.WriteFile(root, r.RootJSON(1), 0o644)
			ca := filepath.Join(dir, "ca.pem")
			if srv.Certificate() != nil {
				os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
			}
			out := filepath.Join(dir, "out", "slot.img")
			os.MkdirAll(filepath.Dir(out), 0o755)
			if tt.tamper {
				p := r.TargetPath(target)
				b, _ := os.ReadFile(p)
				b[0] ^= 0xff
				os.WriteFile(p, b, 0o644)
			}
			args := []string{"--repo", srv.URL, "--root", root, "--metadata-dir", filepath.Join(dir, "meta"), "--output", out, target}
			if tt.tls {
				args = append([]string{"--ca", ca}, args...)
			}
			if tt.args != nil {
				args = tt.args(srv.URL, root, ca, out)
			}
			var stdout, stderr bytes.Buffer
			cmd := newFetchCmd(&cli.Env{Stdout: &stdout, Stderr: &stderr, Log: cli.NewLogger(&stderr, false)})
			cmd.SetArgs(args)
			cmd.SetOut(&stdout)
			cmd.SetErr(&stderr)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.ExecuteContext(t.Context())
			if err != nil && cli.IsCobraUsageError(err) {
				err = cli.BadInput(err)
			}
			code := cli.ExitCode(err, &stderr, "plumbd")
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Fatalf("plumbd fetch %q: exit %d, stderr %q; want exit %d, stderr containing %q", args, code, stderr.String(), tt.wantCode, tt.wantErr)
			}
			got, err := os.ReadFile(out)
			if tt.wantCode == 0 {
				if !bytes.Equal(got, payload) {
					t.Errorf("output: %d bytes (%v), want the %d bytes of the target", len(got), err, len(payload))
				}
				return
			}
			if !os.IsNotExist(err) {
				t.Errorf("output exists after a failure (%v), want none", err)
			}
			left, _ := os.ReadDir(filepath.Dir(out))
			if len(left) != 0 {
				t.Errorf("output dir holds %d files after a failure, want none", len(left))
			}
		})
	}
}

package plumb

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// runPlumb runs plumb ARGS and returns the exit code, stdout and stderr.
func runPlumb(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestFleetCommands: plumb serve with no flags makes the default
// organization and its join token; plumb fleet bootstraps another
// organization, a token and an admin, and lists through the API what a
// device of that organization reported.
func TestFleetCommands(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "repository", "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runServeCmd(ctx, []string{dir, "--addr", "127.0.0.1:0", "--access-log=false"}, &stdout, &stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	re := regexp.MustCompile(`(?m)^URL:\s+(https://\S+/)\s.*\nCA:\s+(\S+).*\nJoin:\s+(\S+)`)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("no URL, CA and join token printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		m = re.FindStringSubmatch(stdout.String())
	}
	url, ca := m[1], m[2]
	if m[3] != filepath.Join(dir, "join-token") {
		t.Errorf("join token printed at %s, want DIR/join-token", m[3])
	}

	code, out, errOut := runPlumb(t, "fleet", "org", "create", "acme", "--dir", dir)
	tok := regexp.MustCompile(`join token: (plumbjoin_\S+)`).FindStringSubmatch(out)
	if code != 0 || tok == nil {
		t.Fatalf("org create: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runPlumb(t, "fleet", "org", "create", "acme", "--dir", dir); code != cli.ExitBadInput || !strings.Contains(errOut, "already exists") {
		t.Errorf("org create twice: %d %q", code, errOut)
	}
	code, secret, errOut := runPlumb(t, "fleet", "token", "create", "--org", "acme", "--role", "viewer", "--dir", dir)
	secret = strings.TrimSpace(secret)
	if code != 0 || !strings.HasPrefix(secret, "plumbtok_") {
		t.Fatalf("token create: %d %q %q", code, secret, errOut)
	}
	t.Setenv("PLUMB_PASSWORD", "a long enough password")
	if code, out, errOut := runPlumb(t, "fleet", "user", "add", "alice", "--org", "acme", "--role", "admin", "--dir", dir); code != 0 || !strings.Contains(out, "admin of acme") {
		t.Errorf("user add: %d %q %q", code, out, errOut)
	}

	if code, out, errOut := runPlumb(t, "fleet", "org", "ek-ca", "--org", "acme", "--dir", dir, ca); code != 0 || !strings.Contains(out, "trusts EK certificates") {
		t.Errorf("org ek-ca: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runPlumb(t, "fleet", "org", "ek-ca", "--org", "acme", "--dir", dir, filepath.Join(dir, "join-token")); code != cli.ExitBadInput || !strings.Contains(errOut, "expected PEM certificates") {
		t.Errorf("org ek-ca with a non-PEM file: %d %q", code, errOut)
	}

	// A device of acme reports over mutual TLS.
	id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := fleetHTTPClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := report.DeviceClient(hc, id, tok[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(report.Body{Device: report.Device{ID: id.ID, PublicKey: id.PublicKey},
		Status: map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "idle"}}})
	resp, err := dc.Post(url+"v1/devices/"+id.ID+"/status", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("device report: %s", resp.Status)
	}

	api := []string{"--server", url, "--org", "acme", "--token", secret, "--ca", ca}
	code, out, errOut = runPlumb(t, append([]string{"fleet", "devices"}, api...)...)
	if code != 0 || !regexp.MustCompile(`(?m)^ID\s+HARDWARE\s+VERSION`).MatchString(out) || !regexp.MustCompile(id.ID+`\s+qemu\s+1\.0\.0`).MatchString(out) {
		t.Errorf("fleet devices: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runPlumb(t, append([]string{"fleet", "devices", "--json"}, api...)...)
	var page struct {
		Devices []struct {
			ID string `json:"id"`
		} `json:"devices"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Devices) != 1 || page.Devices[0].ID != id.ID {
		t.Errorf("fleet devices --json: %d %q", code, out)
	}
	code, out, _ = runPlumb(t, append([]string{"fleet", "events", id.ID}, api...)...)
	if code != 0 || !strings.Contains(out, "joined with join token first") {
		t.Errorf("fleet events: %d %q", code, out)
	}
	code, out, _ = runPlumb(t, append([]string{"fleet", "audit"}, api...)...)
	if code != 0 || !strings.Contains(out, "org.create") || !strings.Contains(out, "user.role") || !strings.Contains(out, "ek-ca.add") {
		t.Errorf("fleet audit: %d %q", code, out)
	}
	// acme's token does not read the default organization.
	code, _, errOut = runPlumb(t, "fleet", "devices", "--server", url, "--org", "default", "--token", secret, "--ca", ca)
	if code != cli.ExitBadInput || !strings.Contains(errOut, "403") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("devices of another organization: %d %q", code, errOut)
	}
}

package wake

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/servetest"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// serve runs plumb serve (fleet service on SQLite, the wake stream
// checking timestamp.json every 10 ms) on 127.0.0.1:addr ("" any port)
// over a copy of repo; it returns the address, the CA pool and a stop
// function that ends it like a restart would.
func serve(t *testing.T, dir, addr string) (string, *x509.CertPool, func()) {
	t.Helper()
	srv := servetest.Start(t, server.Options{Dir: dir, CertDir: filepath.Join(dir, "tls"),
		Fleet: &server.FleetOptions{Bootstrap: true}, Wake: server.WakeOptions{Check: 10 * time.Millisecond}}, addr)
	return srv.Addr, srv.CAs, srv.Stop
}

// publish copies repo's metadata into dir's repository, timestamp.json
// last by rename, as plumb publish does.
func publish(t *testing.T, repo *fetchtest.Repo, dir string) {
	t.Helper()
	dst := filepath.Join(dir, "repository")
	entries, err := os.ReadDir(filepath.Join(repo.Dir, "metadata"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range append(entries, nil) {
		name := "timestamp.json"
		if e != nil {
			if name = e.Name(); name == "timestamp.json" {
				continue
			}
		}
		b, err := os.ReadFile(filepath.Join(repo.Dir, "metadata", name))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dst, "metadata", "."+name)
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dst, "metadata", name)); err != nil {
			t.Fatal(err)
		}
	}
}

// device is plumbd's set-up: a key-file identity, the device's TLS client
// (fetch.TLSConfig, HTTP/1.1) with Transport's changes, mutual TLS and the
// join token through report.DeviceClient.
func device(t *testing.T, dir string, pool *x509.CertPool) (*identity.Identity, *http.Client) {
	t.Helper()
	id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, server.JoinTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	tr := Transport(fetch.NewTransport(fetch.TLSConfig(pool, nil)))
	hc, err := report.DeviceClient(&http.Client{Transport: tr}, id, strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	return id, hc
}

// waitUp waits until the channel is connected (no time limit but the
// test's: what is checked is that it happens).
func waitUp(t *testing.T, c *Channel, want bool) {
	t.Helper()
	for c.Up() != want {
		select {
		case <-t.Context().Done():
			t.Fatalf("channel never became up=%v", want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// statusFile reads a StatusFile.
func statusFile(t *testing.T, path string) deviceapi.WakeStatus {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st deviceapi.WakeStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return st
}

// TestNudgeOnPublish: over real HTTPS with mutual TLS, a publish nudges
// the channel once; a poll then sees the new timestamp. Held before the
// publish, the channel does not nudge for the timestamp it found. The
// status file says connected, and the wake-up's time after it.
func TestNudgeOnPublish(t *testing.T) {
	repo := fetchtest.NewRepo(t)
	repo.Publish()
	dir := t.TempDir()
	publish(t, repo, dir)
	addr, pool, _ := serve(t, dir, "")
	id, hc := device(t, dir, pool)
	sf := filepath.Join(t.TempDir(), "wake.json")
	started := time.Now().UTC()
	c, err := New(Options{URL: "https://" + addr + "/v1/devices/" + id.ID + "/wake", Client: hc, StatusFile: sf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUp(t, c, true)
	select {
	case <-c.C():
		t.Fatal("nudged without a publish")
	default:
	}
	if st := statusFile(t, sf); st.State != deviceapi.WakeConnected || st.Since.Before(started) || !st.LastWake.IsZero() || st.Error != "" {
		t.Errorf("status file once up: %+v, want connected since the start, no wake-up yet", st)
	}
	// The stream's first event has arrived once Up; a publish now.
	repo.AddTarget("qemu-x86_64/1.1.0/rootfs.sqfs", []byte("v2"), map[string]string{"version": "1.1.0"})
	repo.Publish()
	published := time.Now().UTC()
	publish(t, repo, dir)
	<-c.C()
	if st := statusFile(t, sf); st.State != deviceapi.WakeConnected || st.LastWake.Before(published) || c.Status() != st {
		t.Errorf("status file after the wake-up: %+v (Status() %+v), want connected, the wake-up after the publish at %s", st, c.Status(), published)
	}

	// The device's poll finds the new timestamp: TUF still decides.
	fc, err := fetch.New(fetch.Options{Repo: "https://" + addr, MetadataDir: t.TempDir(), TrustedRoot: repo.RootJSON(1),
		HTTPClient: &http.Client{Transport: fetch.NewTransport(fetch.TLSConfig(pool, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	targets, err := fc.Targets()
	if err != nil || len(targets) != 1 || targets[0].Path != "qemu-x86_64/1.1.0/rootfs.sqfs" {
		t.Errorf("after the nudge: targets %v, %v; want the release just published", targets, err)
	}
}

// TestReconnectAfterRestart: the server restarts; the channel is down
// meanwhile (the agent polls), comes back by itself, and a publish made
// while it was down nudges it when it reconnects.
func TestReconnectAfterRestart(t *testing.T) {
	repo := fetchtest.NewRepo(t)
	repo.Publish()
	dir := t.TempDir()
	publish(t, repo, dir)
	addr, pool, stop := serve(t, dir, "")
	id, hc := device(t, dir, pool)
	sf := filepath.Join(t.TempDir(), "wake.json")
	c, err := New(Options{URL: "https://" + addr + "/v1/devices/" + id.ID + "/wake", Client: hc,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, StatusFile: sf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUp(t, c, true)

	up := statusFile(t, sf)
	stop()
	waitUp(t, c, false)
	if st := statusFile(t, sf); st.Since.Before(up.Since) || st.Error == "" {
		t.Errorf("status file while the server is down: %+v, want down since after %s, with why", st, up.Since)
	} else if st.State != deviceapi.WakeDown {
		t.Errorf("status file while the server is down: %+v, want down", st)
	}
	repo.Publish()
	publish(t, repo, dir)
	serve(t, dir, addr) // the same address, a new process's TLS keys
	waitUp(t, c, true)
	<-c.C()
}

// TestRefusedChannel: a device the server refuses (no join token: not a
// member) never counts as up, and backs off; the agent keeps polling.
func TestRefusedChannel(t *testing.T) {
	repo := fetchtest.NewRepo(t)
	repo.Publish()
	dir := t.TempDir()
	publish(t, repo, dir)
	addr, pool, _ := serve(t, dir, "")
	id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := report.DeviceClient(&http.Client{Transport: Transport(fetch.NewTransport(fetch.TLSConfig(pool, nil)))}, id, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{URL: "https://" + addr + "/v1/devices/" + id.ID + "/wake", Client: hc})
	if err != nil {
		t.Fatal(err)
	}
	heard, err := c.hold(t.Context())
	if heard || err == nil || !strings.Contains(err.Error(), "403") || c.Up() {
		t.Errorf("refused device: heard %v, err %v, up %v; want a 403 error and down", heard, err, c.Up())
	}
}

func TestNewBadOptions(t *testing.T) {
	hc := &http.Client{}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no URL", Options{Client: hc}, "expected an https:// URL"},
		{"ftp URL", Options{URL: "ftp://x/y", Client: hc}, "expected an https:// URL"},
		{"no client", Options{URL: "https://x/v1/devices/a/wake"}, "no HTTP client"},
		{"backoff reversed", Options{URL: "https://x/", Client: hc, MinBackoff: time.Minute, MaxBackoff: time.Second}, "MinBackoff <= MaxBackoff"},
	} {
		_, err := New(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: New = %v, want one line with %q", tc.name, err, tc.want)
		}
	}
}

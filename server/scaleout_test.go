package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// TestAttestTwoServers: two servers sharing one database (as two plumb
// serve processes behind a load balancer) keep no attestation state of
// their own: a device enrolls on one and answers the challenge on the
// other, gets a nonce from one and posts its evidence to the other, and
// the evidence replayed to the first is refused (the nonce is used up for
// both). On SQLite (one file) and on a real PostgreSQL.
func TestAttestTwoServers(t *testing.T) {
	if testing.Short() {
		t.Skip("manufactures a TPM with swtpm_setup (RSA key generation): not in -short")
	}
	tpm := startTPM(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if err := tufrepo.Init(t.Context(), repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	facts := publishRelease(t, repoDir, "1.0.0")
	pool := x509.NewCertPool()
	for _, p := range testutil.SwtpmCAs {
		pem, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	plumbLog := []bootrecord.Measurement{bootrecord.RootfsMeasurement(facts.Rootfs.SHA256), bootrecord.ReleaseMeasurement("1.0.0")}
	for _, m := range plumbLog {
		d, _ := hex.DecodeString(m.SHA256)
		if err := tpm2.PCRExtend(tpm, 15, tpm2.AlgSHA256, d, ""); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(t.TempDir(), "measurements.json")
	b, _ := json.Marshal(plumbLog)
	os.WriteFile(logPath, b, 0o644)
	rel := attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64", RootfsSHA256: facts.Rootfs.SHA256}

	eachDB(t, func(t *testing.T, dsn string) {
		if dsn == "" {
			dsn = filepath.Join(t.TempDir(), "fleet.db") // one file for both
		}
		a := newFleetServer(t, dsn, FleetOptions{}, &AttestOptions{ManufacturerCAs: pool}, repoDir)
		b := newFleetServer(t, dsn, FleetOptions{}, &AttestOptions{ManufacturerCAs: pool}, repoDir)
		me := a.device(a.join)
		hcB, err := report.DeviceClient(b.hs.Client(), me.id, a.join)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := attestapi.NewClient(a.hs.URL, me.hc)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := attestapi.NewClient(b.hs.URL, hcB)
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		id := me.id.ID
		if code, body := a.post(me, id, statusBody(me, map[string]any{}, nil)); code != http.StatusNoContent {
			t.Fatalf("join on A: %d %s", code, body)
		}
		dev, err := attest.NewDevice(tpm, t.TempDir(), attest.WithDeviceID(id),
			attest.WithEventLog(filepath.Join(t.TempDir(), "none")), attest.WithPlumbLog(logPath))
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()

		// Enroll on A, answer on B.
		ch, err := ca.Enroll(ctx, dev.EnrollmentRequest())
		if err != nil {
			t.Fatal(err)
		}
		secret, err := dev.ActivateCredential(ch.Credential, ch.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: secret}); err != nil {
			t.Fatalf("activate on B of A's challenge: %v", err)
		}
		// The challenge is used up on A too.
		if _, err := ca.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: secret}); !errors.Is(err, attestapi.ErrRefused) {
			t.Errorf("the same answer again on A: %v, want refused", err)
		}

		// A nonce from B, the evidence to A, replayed to B.
		n, err := cb.Nonce(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := dev.Evidence(ctx, n.Nonce, rel)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := ca.Evidence(ctx, ev)
		if err != nil {
			t.Fatalf("evidence on A with B's nonce: %v", err)
		}
		for _, c := range r.Checks {
			if (c.Name == attest.CheckNonce || c.Name == attest.CheckAKBinding) && c.Status != attest.StatusPassed {
				t.Errorf("evidence on A with B's nonce: %s %s, want passed", c.Name, c.Status)
			}
		}
		if _, _, err := cb.Evidence(ctx, ev); !errors.Is(err, attestapi.ErrRefused) || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("the evidence replayed to B: %v, want refused for its nonce", err)
		}
	})
}

// TestTicketsShared: two servers sharing one database (and the serve
// directory's certificate, as behind a load balancer) share their TLS
// session ticket keys, so a device's session from one resumes on the
// other, its client certificate included: a report on the resumed
// connection is taken as the device's. On SQLite and PostgreSQL.
func TestTicketsShared(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		dir := makeRepo(t).dir
		if dsn == "" {
			dsn = filepath.Join(dir, "fleet.db")
		}
		var urls []string
		var srv *Server
		for range 2 {
			s, err := New(Options{Dir: dir, Fleet: &FleetOptions{DB: dsn, Bootstrap: true}, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, l) }()
			t.Cleanup(func() { cancel(); <-done })
			urls = append(urls, "https://"+l.Addr().String())
			srv = s
		}
		pem, err := os.ReadFile(srv.CACertPath())
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		tok, err := os.ReadFile(filepath.Join(dir, JoinTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.FromFile(filepath.Join(t.TempDir(), "identity.key"))
		if err != nil {
			t.Fatal(err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		hc, err := report.DeviceClient(&http.Client{Transport: tr}, id, strings.TrimSpace(string(tok)))
		if err != nil {
			t.Fatal(err)
		}
		resumed := map[bool]int{}
		for i := range 4 {
			req, _ := http.NewRequest(http.MethodPost, report.URL(urls[i%2]+"/", id.ID),
				strings.NewReader(`{"device":{"id":"`+id.ID+`"},"status":{"update":{"phase":"p`+fmt.Sprint(i)+`"}}}`))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("report %d to server %d: %s", i, i%2, resp.Status)
			}
			resumed[resp.TLS.DidResume]++
			hc.CloseIdleConnections() // a new connection each time
		}
		if resumed[false] != 1 || resumed[true] != 3 {
			t.Errorf("4 connections alternating between 2 servers: %d full handshakes, %d resumed; want 1 and 3", resumed[false], resumed[true])
		}
		d, err := srv.Store().Device(context.Background(), id.ID)
		if err != nil || d.UpdatePhase != "p3" {
			t.Errorf("device after the reports: %+v %v, want update phase p3", d, err)
		}
	})
}

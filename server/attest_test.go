package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/testutil"
)

// startTPM manufactures a TPM with an EK certificate and serves it on a raw
// command socket.
func startTPM(t *testing.T) io.ReadWriter {
	conn, _ := testutil.Swtpm(t, t.TempDir(), true)
	return conn
}

// publishRelease publishes a release (random image bytes) whose reference
// values carry PCR 15 for that image and version.
func publishRelease(t *testing.T, repoDir, version string) *release.Facts {
	t.Helper()
	build := t.TempDir()
	image := make([]byte, 8192)
	rand.Read(image)
	os.WriteFile(filepath.Join(build, builder.RootfsFile), image, 0o644)
	sum := sha256.Sum256(image)
	rootfs := hex.EncodeToString(sum[:])
	pcr15, err := bootrecord.ExpectedPCR15(rootfs, version)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("11", 32)
	m := builder.Manifest{
		Name: "demo", Version: version, Hardware: "qemu-x86_64", Channel: "stable",
		Artifacts: []builder.Artifact{{Name: builder.RootfsFile, Size: int64(len(image)), SHA256: rootfs}},
		Kernel:    builder.Digest{Size: 1, SHA256: other}, Initrd: builder.Digest{Size: 1, SHA256: other},
		Measured: &release.Measured{Bootloader: other, Kernel: other, Initrd: other, PCR15: pcr15,
			Cmdline: map[string]string{"a": "initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro plumb.slot=a"}},
	}
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(build, builder.ManifestFile), b, 0o644)
	r, err := tufrepo.Open(repoDir, tufrepo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.Publish(t.Context(), build, tufrepo.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAttestEndpoints runs the device side (attest.Device on swtpm) against
// the verifier endpoints over HTTP: enroll, activate, nonce, evidence, the
// stored report; then the ways it is refused.
func TestAttestEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("manufactures a TPM with swtpm_setup (RSA key generation): not in -short")
	}
	for _, p := range testutil.SwtpmCAs {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("swtpm-localca CA not found (%v): run swtpm_setup once", err)
		}
	}
	repoDir := filepath.Join(t.TempDir(), "repo")
	if err := tufrepo.Init(t.Context(), repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	facts := publishRelease(t, repoDir, "1.0.0")
	pool := x509.NewCertPool()
	for _, p := range testutil.SwtpmCAs {
		pem, _ := os.ReadFile(p)
		pool.AppendCertsFromPEM(pem)
	}
	s, err := New(Options{Dir: repoDir, Attest: &AttestOptions{ManufacturerCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	c, err := attestapi.NewClient(hs.URL, hs.Client())
	if err != nil {
		t.Fatal(err)
	}

	// The device: plumb-init's two extends, then the agent's keys.
	tpm := startTPM(t)
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
	dev, err := attest.NewDevice(tpm, t.TempDir(), attest.WithDeviceID("dev-1"),
		attest.WithEventLog(filepath.Join(t.TempDir(), "none")), attest.WithPlumbLog(logPath))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	rel := attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64", RootfsSHA256: facts.Rootfs.SHA256}
	ctx := t.Context()

	evidence := func() *attestapi.Evidence {
		t.Helper()
		n, err := c.Nonce(ctx, "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		ev, err := dev.Evidence(ctx, n.Nonce, rel)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	status := func(r *attestapi.Report, name string) string {
		for _, ch := range r.Checks {
			if ch.Name == name {
				return ch.Status
			}
		}
		return "missing"
	}

	// Not enrolled yet: the AK binding fails.
	r, _, err := c.Evidence(ctx, evidence())
	if err != nil {
		t.Fatal(err)
	}
	if got := status(r, attest.CheckAKBinding); got != attest.StatusFailed {
		t.Errorf("before enrollment: ak_binding %s, want failed", got)
	}

	// A wrong answer to the challenge is refused, and uses it up.
	if _, err := c.Enroll(ctx, dev.EnrollmentRequest()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: "dev-1", Secret: []byte("guess")}); !errors.Is(err, attestapi.ErrRefused) {
		t.Errorf("activate with a wrong secret: %v, want refused", err)
	}
	ch, err := c.Enroll(ctx, dev.EnrollmentRequest())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := dev.ActivateCredential(ch.Credential, ch.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: "dev-1", Secret: secret}); err != nil {
		t.Fatal(err)
	}

	ev := evidence()
	r, raw, err := c.Evidence(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{attest.CheckEKCertificate, attest.CheckAKBinding, attest.CheckQuoteSignature, attest.CheckNonce,
		attest.CheckPCRDigest, attest.CheckPlumbLog, attest.CheckRootfs, attest.CheckRelease} {
		if got := status(r, name); got != attest.StatusPassed {
			t.Errorf("%s: %s, want passed\n%s", name, got, raw)
		}
	}
	// No event log from swtpm without firmware: those checks cannot pass.
	if got := status(r, attest.CheckKernel); got == attest.StatusPassed {
		t.Errorf("kernel check passed without an event log")
	}

	// The report is kept: latest.json over HTTP, and Markdown beside it.
	resp, err := hs.Client().Get(hs.URL + "/v1/devices/dev-1/attestation")
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(bytes.TrimSpace(kept), bytes.TrimSpace(raw)) {
		t.Errorf("GET attestation: %s, %d bytes; want the last report (%d bytes)", resp.Status, len(kept), len(raw))
	}
	mds, _ := filepath.Glob(filepath.Join(repoDir, "attest", "reports", "dev-1", "*.md"))
	if len(mds) != 2 {
		t.Errorf("Markdown reports kept: %d, want 2", len(mds))
	}

	// Replaying the same evidence: its nonce is used up.
	if _, _, err := c.Evidence(ctx, ev); !errors.Is(err, attestapi.ErrRefused) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("replayed evidence: %v, want refused for its nonce", err)
	}
	// Evidence for another nonce than the one handed out fails its check.
	if _, err := c.Nonce(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	r, _, err = c.Evidence(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := status(r, attest.CheckNonce); got != attest.StatusFailed {
		t.Errorf("stale nonce: quote_nonce %s, want failed", got)
	}

	// Bad requests: one line each, 4xx.
	for _, tc := range []struct{ method, path, body, want string }{
		{"GET", "/v1/attest/nonce?device=", "", "device"},
		{"GET", "/v1/attest/nonce?device=a/b", "", "device"},
		{"POST", "/v1/attest/nonce?device=x", "", "method"},
		{"POST", "/v1/attest/evidence", `{"version": 1, "device_id": `, "evidence"},
		{"POST", "/v1/attest/evidence", `{"version": "one"}`, "version"},
		{"POST", "/v1/attest/enroll", `{"device_id": "x", "ek_public": "AAAA", "ak_public": "AAAA"}`, "ek_public"},
		{"POST", "/v1/attest/activate", `{"device_id": "nobody", "secret": "AAAA"}`, "no outstanding challenge"},
		{"GET", "/v1/devices/nobody/attestation", "", "no attestation report"},
	} {
		req, _ := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p attestapi.Problem
		if resp.StatusCode/100 != 4 || json.Unmarshal(body, &p) != nil || !strings.Contains(p.Error, tc.want) || strings.Contains(p.Error, "\n") {
			t.Errorf("%s %s: %s %s; want 4xx with one line naming %q", tc.method, tc.path, resp.Status, bytes.TrimSpace(body), tc.want)
		}
	}
}

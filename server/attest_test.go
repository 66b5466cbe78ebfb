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
	// The device's TPM first: swtpm_setup creates swtpm-localca's CA files
	// on its first run, so they are read only after it.
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
			t.Fatalf("swtpm local CA (swtpm_setup made the EK certificate but not its CA?): %v", err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	fs := newFleetServer(t, "", FleetOptions{}, &AttestOptions{ManufacturerCAs: pool}, repoDir)
	me, attacker := fs.device(fs.join), fs.device(fs.join)
	id := me.id.ID
	c, err := attestapi.NewClient(fs.hs.URL, me.hc)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := attestapi.NewClient(fs.hs.URL, attacker.hc)
	if err != nil {
		t.Fatal(err)
	}
	viewer := fs.token("default", "viewer")

	// The device: plumb-init's two extends, then the agent's keys.
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
	dev, err := attest.NewDevice(tpm, t.TempDir(), attest.WithDeviceID(id),
		attest.WithEventLog(filepath.Join(t.TempDir(), "none")), attest.WithPlumbLog(logPath))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	rel := attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64", RootfsSHA256: facts.Rootfs.SHA256}
	ctx := t.Context()

	evidence := func() *attestapi.Evidence {
		t.Helper()
		n, err := c.Nonce(ctx, id)
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

	// Not enrolled yet: the verifier says so, and hands out no nonce.
	if _, err := c.Nonce(ctx, id); !errors.Is(err, attestapi.ErrNotEnrolled) {
		t.Errorf("nonce before enrollment: %v, want ErrNotEnrolled", err)
	}

	// A wrong answer to the challenge is refused, and uses it up.
	if _, err := c.Enroll(ctx, dev.EnrollmentRequest()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: []byte("guess")}); !errors.Is(err, attestapi.ErrRefused) {
		t.Errorf("activate with a wrong secret: %v, want refused", err)
	}
	enroll := func() {
		t.Helper()
		ch, err := c.Enroll(ctx, dev.EnrollmentRequest())
		if err != nil {
			t.Fatal(err)
		}
		secret, err := dev.ActivateCredential(ch.Credential, ch.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: secret}); err != nil {
			t.Fatal(err)
		}
	}
	enroll()

	// Forgery: another joined device, with its own key, acting for this
	// device's id is refused at every endpoint and changes nothing.
	enrolledBefore, _ := fs.db.Device(ctx, id)
	if _, err := evil.Nonce(ctx, id); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("nonce for another device: %v, want 403", err)
	}
	req := dev.EnrollmentRequest()
	if _, err := evil.Enroll(ctx, req); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("enroll for another device: %v, want 403", err)
	}
	if _, err := evil.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: []byte("x")}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("activate for another device: %v, want 403", err)
	}
	if enrolledAfter, _ := fs.db.Device(ctx, id); !bytes.Equal(enrolledAfter.AKPublic, enrolledBefore.AKPublic) || !enrolledAfter.Enrolled.Equal(enrolledBefore.Enrolled) {
		t.Errorf("forged enrollment changed the device's binding")
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

	// The report is kept in the device's history; operators read it.
	code, kept := fs.api(viewer, http.MethodGet, "/v1/orgs/default/devices/"+id+"/attestation", nil)
	if code != http.StatusOK || kept != strings.TrimSpace(string(raw)) {
		t.Errorf("GET attestation: %d, %d bytes; want the last report (%d bytes)", code, len(kept), len(raw))
	}
	// Evidence posted by another device for this id: refused, not kept.
	if _, _, err := evil.Evidence(ctx, evidence()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("evidence for another device: %v, want 403", err)
	}
	if _, k := fs.api(viewer, http.MethodGet, "/v1/orgs/default/devices/"+id+"/attestation", nil); k != kept {
		t.Errorf("forged evidence changed the kept report")
	}

	// Replaying the same evidence: its nonce is used up.
	if _, _, err := c.Evidence(ctx, ev); !errors.Is(err, attestapi.ErrRefused) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("replayed evidence: %v, want refused for its nonce", err)
	}
	// Old evidence claiming the fresh nonce fails its check: the quote is
	// over the old one.
	fresh, err := c.Nonce(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	stale := *ev
	stale.Nonce = fresh.Nonce
	r, _, err = c.Evidence(ctx, &stale)
	if err != nil {
		t.Fatal(err)
	}
	if got := status(r, attest.CheckNonce); got != attest.StatusFailed {
		t.Errorf("stale nonce: quote_nonce %s, want failed", got)
	}

	// The server loses the enrollment (a restored database, an operator's
	// rebind): the device is told, and enrolls again.
	if code, body := fs.api(fs.token("default", "admin"), http.MethodPost, "/v1/orgs/default/devices/"+id+"/rebind", nil); code != http.StatusNoContent {
		t.Fatalf("rebind: %d %s", code, body)
	}
	if _, err := c.Nonce(ctx, id); !errors.Is(err, attestapi.ErrNotEnrolled) {
		t.Errorf("nonce after the enrollment was lost: %v, want ErrNotEnrolled", err)
	}
	enroll()
	if r, _, err := c.Evidence(ctx, evidence()); err != nil || status(r, attest.CheckAKBinding) != attest.StatusPassed {
		t.Errorf("after enrolling again: %v, ak_binding %v", err, r)
	}

	// A device with no join token but an EK certificate that chains to a
	// CA its organization trusts joins by credential activation; before
	// the CA is configured it is refused as pending.
	newcomer := fs.device("")
	dev.Close() // the TPM holds few loaded objects: the newcomer shares it
	nc, err := attestapi.NewClient(fs.hs.URL, newcomer.hc)
	if err != nil {
		t.Fatal(err)
	}
	ndev, err := attest.NewDevice(tpm, t.TempDir(), attest.WithDeviceID(newcomer.id.ID),
		attest.WithEventLog(filepath.Join(t.TempDir(), "none")), attest.WithPlumbLog(logPath))
	if err != nil {
		t.Fatal(err)
	}
	defer ndev.Close()
	if _, err := nc.Enroll(ctx, ndev.EnrollmentRequest()); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Errorf("enroll without a join credential: %v; want refused as pending", err)
	}
	org, _ := fs.db.OrgByName(ctx, "default")
	for _, p := range testutil.SwtpmCAs {
		pem, _ := os.ReadFile(p)
		if err := fs.db.AddEKCA(ctx, org.ID, string(pem)); err != nil {
			t.Fatal(err)
		}
	}
	nch, err := nc.Enroll(ctx, ndev.EnrollmentRequest())
	if err != nil {
		t.Fatalf("enroll with an EK certificate the organization trusts: %v", err)
	}
	if _, err := fs.db.Device(ctx, newcomer.id.ID); err == nil {
		t.Error("the device joined before credential activation")
	}
	nsecret, err := ndev.ActivateCredential(nch.Credential, nch.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Activate(ctx, &attestapi.Activation{DeviceID: newcomer.id.ID, Secret: nsecret}); err != nil {
		t.Fatalf("activate: %v", err)
	}
	if joined, err := fs.db.Device(ctx, newcomer.id.ID); err != nil || joined.OrgID != org.ID || joined.JoinedBy != "EK certificate" {
		t.Errorf("after activation: %+v, %v; want joined to default by EK certificate", joined, err)
	}
	if code, body := fs.post(newcomer, newcomer.id.ID, statusBody(newcomer, map[string]any{}, nil)); code != http.StatusNoContent {
		t.Errorf("status report after joining by EK: %d %s", code, body)
	}

	// Bad requests: one line each, 4xx.
	for _, tc := range []struct{ method, path, body, want string }{
		{"GET", "/v1/attest/nonce?device=", "", "device"},
		{"GET", "/v1/attest/nonce?device=a/b", "", "device"},
		{"POST", "/v1/attest/nonce?device=x", "", "method"},
		{"POST", "/v1/attest/evidence", `{"version": 1, "device_id": `, "evidence"},
		{"POST", "/v1/attest/evidence", `{"version": "one"}`, "version"},
		{"POST", "/v1/attest/enroll", `{"device_id": "` + id + `", "ek_public": "AAAA", "ak_public": "AAAA"}`, "bound to another TPM"},
		{"POST", "/v1/attest/activate", `{"device_id": "` + id + `", "secret": "AAAA"}`, "no outstanding challenge"},
		{"POST", "/v1/attest/activate", `{"device_id": "nobody", "secret": "AAAA"}`, "writes only as itself"},
		{"POST", "/v1/attest/enroll", strings.Repeat(" ", attestapi.MaxBody+1), "at most"},
	} {
		req, _ := http.NewRequest(tc.method, fs.hs.URL+tc.path, strings.NewReader(tc.body))
		resp, err := me.hc.Do(req)
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

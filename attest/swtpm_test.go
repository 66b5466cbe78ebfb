package attest_test

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/internal/testutil"
)

// startSwtpm manufactures a swtpm like the VM tests do (EK certificate from
// swtpm's local CA) and connects to it over its server socket.
func startSwtpm(t *testing.T) net.Conn {
	conn, _ := testutil.Swtpm(t, t.TempDir(), true)
	return conn
}

// The EK certificate swtpm_setup provisions verifies against swtpm's local
// CA and certifies the EK NewDevice creates (the TCG default template),
// and a quote from swtpm verifies: the VM tests' TPM works with the
// verifier.
func TestSwtpmEKCertificate(t *testing.T) {
	conn := startSwtpm(t)
	dev, err := attest.NewDevice(conn, "", attest.WithDeviceID("swtpm-1"), attest.WithEventLog("/nonexistent"), attest.WithPlumbLog("/nonexistent"))
	if err != nil {
		t.Fatalf("NewDevice on swtpm: %v", err)
	}
	defer dev.Close()
	if len(dev.EKCertificate()) == 0 {
		t.Fatal("no EK certificate read from swtpm's NV 0x01c00002")
	}
	pool := x509.NewCertPool()
	for _, p := range testutil.SwtpmCAs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("swtpm local CA: %v", err)
		}
		pool.AppendCertsFromPEM(b)
	}
	store := attest.MemStore{}
	v := attest.NewVerifier(attest.VerifierOptions{ManufacturerCAs: pool, Enrolled: store})
	req := dev.EnrollmentRequest()
	ch, err := v.Challenge(req.DeviceID, req.EKPublic, req.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := dev.ActivateCredential(ch.CredBlob, ch.EncSecret)
	if err != nil {
		t.Fatalf("ActivateCredential on swtpm: %v", err)
	}
	en, err := v.ConfirmBinding(ch, secret)
	if err != nil {
		t.Fatal(err)
	}
	store[en.DeviceID] = en
	n := []byte("swtpm nonce 0123")
	ev, err := dev.Evidence(t.Context(), n, attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	rep := v.Verify(ev, n, attest.References{})
	for _, name := range []string{attest.CheckEKCertificate, attest.CheckAKBinding, attest.CheckQuoteSignature, attest.CheckNonce, attest.CheckPCRDigest, attest.CheckPlumbLog} {
		if c := rep.Check(name); c.Status != attest.StatusPassed {
			t.Errorf("%s = %s (%s / %s / %s)", name, c.Status, c.Expected, c.Actual, c.Detail)
		}
	}
	t.Logf("EK certificate: %s", rep.Check(attest.CheckEKCertificate).Actual)
}

// swtpm's quote passes tpm2_checkquote, and a second Device on the same
// TPM (the next boot, another plumbd run) has the same AK: the enrollment
// holds without a stored key.
func TestSwtpmQuoteCheckquoteAndStableAK(t *testing.T) {
	checkquote := testutil.RequireTool(t, "tpm2_checkquote", "tpm2-tools")
	conn := startSwtpm(t)
	var aks [][]byte
	var ev *attestapi.Evidence
	for range 2 {
		dev, err := attest.NewDevice(conn, "", attest.WithDeviceID("swtpm-1"), attest.WithEventLog("/nonexistent"), attest.WithPlumbLog("/nonexistent"))
		if err != nil {
			t.Fatal(err)
		}
		aks = append(aks, dev.AKPublic())
		if ev, err = dev.Evidence(t.Context(), []byte("checkquote nonce"), attestapi.Release{Version: "1.0.0", Hardware: "qemu-x86_64"}); err != nil {
			t.Fatal(err)
		}
		if err := dev.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(aks[0], aks[1]) {
		t.Error("the AK changed between two devices on the same TPM")
	}
	dir := t.TempDir()
	if err := attest.Export(ev, dir); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(checkquote, attest.CheckquoteArgs(dir, ev.Nonce)...).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_checkquote on swtpm's quote: %v\n%s", err, out)
	}
}

package plumb

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// TestVMTPMCA: plumb vm tpm-ca prints swtpm-localca's root and issuer
// certificates, which make demo hands to plumb serve --ek-ca: two PEM
// files, each a CA certificate, the issuer signed by the root.
func TestVMTPMCA(t *testing.T) {
	testutil.RequireTool(t, "swtpm_setup", "swtpm-tools")
	code, stdout, stderr := runPlumb(t, "vm", "tpm-ca")
	if code != 0 {
		t.Fatalf("plumb vm tpm-ca: exit %d: %s", code, stderr)
	}
	paths := strings.Fields(stdout)
	if len(paths) != 2 {
		t.Fatalf("plumb vm tpm-ca printed %q: expected two files (root, issuer)", stdout)
	}
	var certs []*x509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			t.Fatalf("%s: not a PEM certificate", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !c.IsCA {
			t.Fatalf("%s: %s is not a CA certificate", p, c.Subject)
		}
		certs = append(certs, c)
	}
	if err := certs[1].CheckSignatureFrom(certs[0]); err != nil {
		t.Fatalf("issuer %s is not signed by root %s: %v", certs[1].Subject, certs[0].Subject, err)
	}
}

package plumb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/attest/attesttest"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

func digest(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

// attestFixture is a simulated device's evidence, its enrollment and its
// EK CA, written to files.
type attestFixture struct {
	dir, evidence, enrolled, ekCA, nonce string
}

func newAttestFixture(t *testing.T, cmdline string) attestFixture {
	t.Helper()
	rw := attesttest.Simulator(t, 7)
	ca := attesttest.NewCA(t, "Test TPM CA")
	ca.Provision(t, rw)
	events := attesttest.BootEvents(digest("boot"), digest("kernel"), digest("initrd"), cmdline)
	attesttest.Extend(t, rw, events)
	ms := attesttest.Measure(t, rw, digest("rootfs"), "2.0.0")
	dir := t.TempDir()
	f := attestFixture{dir: dir, evidence: filepath.Join(dir, "evidence.json"), enrolled: filepath.Join(dir, "enrolled.json"), ekCA: filepath.Join(dir, "ek-ca.pem")}
	os.WriteFile(filepath.Join(dir, "log"), attesttest.Log(events), 0o644)
	b, _ := json.Marshal(ms)
	os.WriteFile(filepath.Join(dir, "ms.json"), b, 0o644)
	os.WriteFile(f.ekCA, ca.PEM(), 0o644)
	dev, err := attest.NewDevice(rw, "", attest.WithDeviceID("dev-7"), attest.WithEventLog(filepath.Join(dir, "log")), attest.WithPlumbLog(filepath.Join(dir, "ms.json")))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	v := attest.NewVerifier(attest.VerifierOptions{})
	req := dev.EnrollmentRequest()
	ch, err := v.Challenge(req.DeviceID, req.EKPublic, req.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := dev.ActivateCredential(ch.CredBlob, ch.EncSecret)
	if err != nil {
		t.Fatal(err)
	}
	en, err := v.ConfirmBinding(ch, secret)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(en)
	os.WriteFile(f.enrolled, b, 0o644)
	n := digest("nonce")[:16]
	f.nonce = hex.EncodeToString(n)
	ev, err := dev.Evidence(t.Context(), n, attestapi.Release{Version: "2.0.0", Hardware: "qemu-x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(ev)
	os.WriteFile(f.evidence, b, 0o644)
	return f
}

func facts(kernel []byte, cmdline string) map[string]any {
	return map[string]any{
		"kind": "full", "name": "demo", "hardware": "qemu-x86_64", "version": "2.0.0", "channel": "stable", "rollout": 100,
		"rootfs": map[string]any{"sha256": hex.EncodeToString(digest("rootfs")), "size": 4096},
		"initrd": map[string]any{"sha256": hex.EncodeToString(digest("initrd")), "size": 10},
		"measured": map[string]any{
			"bootloader_authenticode": hex.EncodeToString(digest("boot")),
			"kernel_authenticode":     hex.EncodeToString(kernel),
			"initrd_sha256":           hex.EncodeToString(digest("initrd")),
			"cmdline":                 map[string]string{"a": cmdline, "b": "root=PARTUUID=b plumb.slot=b"},
			"pcr15":                   strings.Repeat("0", 64),
		},
	}
}

func TestAttestVerifyCmd(t *testing.T) {
	const cmdline = "root=PARTUUID=a ro plumb.slot=a"
	fx := newAttestFixture(t, cmdline)
	r := fetchtest.NewRepo(t)
	r.AddTarget("qemu-x86_64/2.0.0/rootfs.sqfs", []byte("rootfs"), facts(digest("kernel"), cmdline))
	r.AddTarget("qemu-x86_64/3.0.0/rootfs.sqfs", []byte("rootfs3"), func() map[string]any {
		f := facts(digest("another kernel"), cmdline)
		f["version"] = "3.0.0"
		return f
	}())
	r.Publish()
	srv := fetchtest.Serve(t, r.Dir)
	root := filepath.Join(fx.dir, "root.json")
	os.WriteFile(root, r.RootJSON(1), 0o644)
	ca := filepath.Join(fx.dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	// A plumb repo directory: DIR/repository is the served tree.
	repoDir := filepath.Join(fx.dir, "repo")
	os.MkdirAll(repoDir, 0o755)
	if err := os.Symlink(r.Dir, filepath.Join(repoDir, "repository")); err != nil {
		t.Fatal(err)
	}
	base := []string{"attest", "verify", fx.evidence, "--ek-ca", fx.ekCA, "--enrolled", fx.enrolled, "--nonce", fx.nonce}
	url := []string{"--repo", srv.URL, "--root", root, "--ca", ca}

	for _, tc := range []struct {
		name     string
		args     []string
		evidence func(map[string]any)
		wantCode int
		want     []string // in stdout
		wantErr  string
	}{
		{name: "passes over https", args: append(url, "--format", "json"), wantCode: 0, want: []string{`"verdict": "passed"`}},
		{name: "passes from a repo dir", args: []string{"--repo", repoDir}, wantCode: 0, want: []string{"**Verdict: PASSED**", "| ✅ | Kernel or UKI (PCR 4) (`kernel`) | passed"}},
		{name: "wrong nonce", args: append(append([]string{}, url...), "--nonce", strings.Repeat("ab", 16)), wantCode: 3, want: []string{"| ❌ | Quote is fresh (nonce)"}, wantErr: "attestation failed: quote_nonce"},
		{name: "claims a release with another kernel", args: url, evidence: func(m map[string]any) {
			m["release"].(map[string]any)["version"] = "3.0.0"
		}, wantCode: 3, wantErr: "attestation failed: kernel, release"},
		{name: "claims an unpublished release", args: url, evidence: func(m map[string]any) {
			m["release"].(map[string]any)["version"] = "9.9.9"
		}, wantCode: 3, wantErr: "has no release 9.9.9 for qemu-x86_64"},
		{name: "malformed evidence", args: url, evidence: func(m map[string]any) {
			m["pcrs"] = "zero"
		}, wantCode: 2, wantErr: "evidence: pcrs: expected an object, got JSON string"},
		{name: "no root for a URL", args: []string{"--repo", srv.URL}, wantCode: 2, wantErr: "--root: expected the repository's trusted root.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			if tc.evidence != nil {
				b, _ := os.ReadFile(fx.evidence)
				var m map[string]any
				json.Unmarshal(b, &m)
				tc.evidence(m)
				b, _ = json.Marshal(m)
				p := filepath.Join(t.TempDir(), "ev.json")
				os.WriteFile(p, b, 0o644)
				args[2] = p
			}
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tc.wantErr) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr = %q, want one line with %q", stderr.String(), tc.wantErr)
			}
		})
	}
}

func TestAttestExportCmd(t *testing.T) {
	fx := newAttestFixture(t, "root=x")
	out := filepath.Join(fx.dir, "export")
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"attest", "export", fx.evidence, "-o", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{attest.ExportQuote, attest.ExportSignature, attest.ExportAKPEM, attest.ExportPCRs, attest.ExportNonce, attest.ExportScript} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if n, _ := os.ReadFile(filepath.Join(out, attest.ExportNonce)); strings.TrimSpace(string(n)) != fx.nonce {
		t.Errorf("nonce.hex = %q, want %s", n, fx.nonce)
	}
}

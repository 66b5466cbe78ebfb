package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/internal/testutil"
)

// plumbd attest against swtpm (manufactured like the VM tests' TPM),
// through the same emulator socket path a device would open as /dev/tpmrm0;
// the evidence parses, and tpm2_checkquote accepts its export.
func TestDeviceAttestCmdOnSwtpm(t *testing.T) {
	testutil.RequireTool(t, "swtpm", "swtpm")
	testutil.RequireTool(t, "swtpm_setup", "swtpm-tools")
	checkquote := testutil.RequireTool(t, "tpm2_checkquote", "tpm2-tools")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	if out, err := exec.CommandContext(t.Context(), "swtpm_setup", "--tpm2", "--tpmstate", state, "--create-ek-cert", "--overwrite").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc/plumb"), 0o755)
	os.MkdirAll(filepath.Join(root, "data/plumb"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/plumb/release.json"), []byte(`{"name":"demo","version":"1.2.0","hardware":"qemu-x86_64","channel":"stable"}`), 0o644)
	os.WriteFile(filepath.Join(root, "ms.json"), []byte(`[]`), 0o644)
	out := filepath.Join(dir, "evidence.json")
	const nonce = "00112233445566778899aabbccddeeff"
	var stdout, stderr bytes.Buffer
	code := RunPlumbd(context.Background(), []string{"attest", "-o", out, "--nonce", nonce, "--tpm", sock, "--root", root,
		"--event-log", filepath.Join(root, "no-log"), "--plumb-log", filepath.Join(root, "ms.json")}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("plumbd attest: exit %d: %s", code, stderr.String())
	}
	f, _ := os.Open(out)
	defer f.Close()
	ev, err := attest.ParseEvidence(f)
	if err != nil {
		t.Fatalf("ParseEvidence: %v", err)
	}
	if ev.Release.Version != "1.2.0" || len(ev.EKCertificate) == 0 || ev.DeviceID == "" {
		t.Errorf("evidence: release %+v, %d bytes of EK certificate, device %q", ev.Release, len(ev.EKCertificate), ev.DeviceID)
	}
	exp := filepath.Join(dir, "export")
	if code := RunPlumb(context.Background(), []string{"attest", "export", out, "-o", exp}, &stdout, &stderr); code != 0 {
		t.Fatalf("plumb attest export: exit %d: %s", code, stderr.String())
	}
	if b, err := exec.Command(checkquote, attest.CheckquoteArgs(exp, ev.Nonce)...).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_checkquote on swtpm's quote: %v\n%s", err, b)
	}
	// A second run keeps the device id (data dir) and the AK (same primary).
	code = RunPlumbd(context.Background(), []string{"attest", "-o", out + "2", "--tpm", sock, "--root", root,
		"--event-log", filepath.Join(root, "no-log"), "--plumb-log", filepath.Join(root, "ms.json")}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("second plumbd attest: exit %d: %s", code, stderr.String())
	}
	f2, _ := os.Open(out + "2")
	defer f2.Close()
	ev2, err := attest.ParseEvidence(f2)
	if err != nil {
		t.Fatal(err)
	}
	if ev2.DeviceID != ev.DeviceID || !bytes.Equal(ev2.AKPublic, ev.AKPublic) {
		t.Errorf("second run: device %q AK changed=%v, want the same device and AK", ev2.DeviceID, !bytes.Equal(ev2.AKPublic, ev.AKPublic))
	}
	if !strings.Contains(stdout.String(), "evidence written to") {
		t.Errorf("stdout = %q", stdout.String())
	}
}

package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// SwtpmCAs are swtpm-localca's certificates, which sign the EK certificates
// swtpm_setup makes (testvm.TPMCACerts finds the same files for the VMs).
var SwtpmCAs = []string{"/var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem", "/var/lib/swtpm-localca/issuercert.pem"}

// Swtpm starts a real TPM 2.0 (swtpm) with its state in stateDir, serving
// raw TPM commands on a unix socket, and returns the connection and a
// function that stops it by its PID (also run at cleanup). With ekCert,
// swtpm_setup first manufactures the TPM with an EK certificate from
// swtpm's local CA, as the VM tests' TPMs are. A second Swtpm on the same
// stateDir is a reboot of the same TPM.
func Swtpm(t testing.TB, stateDir string, ekCert bool) (net.Conn, func()) {
	t.Helper()
	bin := RequireTool(t, "swtpm", "swtpm")
	if ekCert {
		setup := RequireTool(t, "swtpm_setup", "swtpm-tools")
		if out, err := exec.Command(setup, "--tpm2", "--tpmstate", stateDir,
			"--create-ek-cert", "--create-platform-cert", "--overwrite").CombinedOutput(); err != nil {
			t.Fatalf("swtpm_setup: %v\n%s", err, out)
		}
	}
	sock := filepath.Join(stateDir, "sock")
	os.Remove(sock)
	cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+stateDir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "not-need-init,startup-clear")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("swtpm (pid %d) did not listen on %s: %v", cmd.Process.Pid, sock, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, func() { conn.Close(); stop() }
}

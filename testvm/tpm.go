package testvm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// swtpm is one swtpm process serving one QEMU process. Its state
// directory outlives it.
type swtpm struct {
	cmd  *exec.Cmd
	sock string // control socket QEMU connects to
	log  *slog.Logger
	done chan struct{} // closed when the process is reaped
	err  error         // its exit status, set before done closes
}

// startTPM manufactures the TPM state in stateDir on first use, then
// starts swtpm on a control socket stateDir/sock. The socket is bound
// here and handed over as fd 3, so it accepts QEMU as soon as this
// returns.
func startTPM(ctx context.Context, stateDir string, log *slog.Logger) (*swtpm, error) {
	swtpmPath, err := toolSwtpm.find()
	if err != nil {
		return nil, err
	}
	if strings.Contains(stateDir, ",") {
		return nil, fmt.Errorf("tpm state dir %q: expected a path without commas (swtpm options cannot quote them)", stateDir)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating tpm state dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "tpm2-00.permall")); errors.Is(err, os.ErrNotExist) {
		if err := manufactureTPM(ctx, stateDir, log); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("checking tpm state: %w", err)
	}

	sock := filepath.Join(stateDir, "sock")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale tpm socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("binding tpm control socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	l.Close()
	if err != nil {
		return nil, fmt.Errorf("binding tpm control socket: %w", err)
	}
	defer lf.Close()

	cmd := exec.Command(swtpmPath, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--ctrl", "type=unixio,fd=3",
		"--log", "file="+filepath.Join(stateDir, "swtpm.log"),
		"--terminate")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting swtpm: %w", err)
	}
	log.Info("swtpm started", "pid", cmd.Process.Pid, "state", stateDir)
	t := &swtpm{cmd: cmd, sock: sock, log: log, done: make(chan struct{})}
	go func() {
		t.err = cmd.Wait()
		log.Info("swtpm exited", "pid", cmd.Process.Pid, "status", cmd.ProcessState.String())
		close(t.done)
	}()
	return t, nil
}

// manufactureTPM creates a TPM 2.0 with EK and platform certificates.
func manufactureTPM(ctx context.Context, stateDir string, log *slog.Logger) error {
	setup, err := toolSwtpmSetup.find()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, setup, "--tpm2", "--tpmstate", stateDir,
		"--create-ek-cert", "--create-platform-cert", "--not-overwrite")
	out, err := cmd.CombinedOutput() // a dozen lines
	if err != nil {
		return fmt.Errorf("manufacturing tpm in %s: swtpm_setup: %w: %s", stateDir, err, strings.TrimSpace(string(out)))
	}
	log.Info("tpm manufactured", "state", stateDir)
	return nil
}

// stop gives swtpm a moment to leave on its own (it does when QEMU
// goes), then ends it by PID.
func (t *swtpm) stop() error {
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 {
			// Process.Signal uses a pidfd: safe after the process is reaped.
			if err := t.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return fmt.Errorf("signalling swtpm (pid %d): %w", t.cmd.Process.Pid, err)
			}
		}
		select {
		case <-t.done:
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	return fmt.Errorf("swtpm (pid %d) did not exit after SIGKILL", t.cmd.Process.Pid)
}

// swtpmLocalCAConf is swtpm-localca's configuration: swtpm_setup
// --create-ek-cert has swtpm_localca sign each EK certificate with the
// issuer it names, under a root in the same state directory.
const swtpmLocalCAConf = "/etc/swtpm-localca.conf"

// TPMCACerts returns the PEM files a verifier must trust for the EK
// certificates of this package's TPMs (swtpm-localca's issuer and root
// certificates), read from /etc/swtpm-localca.conf. swtpm-localca makes
// them with its first certificate: if they are missing, TPMCACerts
// manufactures a scratch TPM to have them made.
func TPMCACerts(ctx context.Context) ([]string, error) {
	b, err := os.ReadFile(swtpmLocalCAConf)
	if err != nil {
		return nil, fmt.Errorf("finding swtpm's EK certificate CA: %w", err)
	}
	var stateDir, issuer string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(k), "#") {
			continue
		}
		switch strings.TrimSpace(k) {
		case "statedir":
			stateDir = strings.TrimSpace(v)
		case "issuercert":
			issuer = strings.TrimSpace(v)
		}
	}
	if stateDir == "" || issuer == "" {
		return nil, fmt.Errorf("%s: expected statedir and issuercert, got %q and %q", swtpmLocalCAConf, stateDir, issuer)
	}
	certs := []string{filepath.Join(stateDir, "swtpm-localca-rootca-cert.pem"), issuer}
	missing := func() error {
		for _, c := range certs {
			if _, err := os.Stat(c); err != nil {
				return fmt.Errorf("swtpm's EK certificate CA: %w", err)
			}
		}
		return nil
	}
	if missing() != nil {
		scratch, err := os.MkdirTemp("", "plumb-tpm-ca-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(scratch)
		if err := manufactureTPM(ctx, scratch, slog.New(slog.DiscardHandler)); err != nil {
			return nil, err
		}
	}
	if err := missing(); err != nil {
		return nil, err
	}
	return certs, nil
}

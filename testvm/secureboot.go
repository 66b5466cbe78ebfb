package testvm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Debian's OVMF build that enforces Secure Boot (it needs SMM), and the
// vars that enroll its snakeoil key as PK, KEK and db: a boot chain
// signed with /usr/share/ovmf/PkKek-1-snakeoil.key runs, anything else is
// refused by the firmware.
const (
	ovmfCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVarsSecure = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	// SnakeoilKey and SnakeoilCert sign boot chains that the Secure Boot
	// VMs accept (the db key of ovmfVarsSecure). The key is encrypted with
	// the passphrase "snakeoil": SnakeoilKeyFile writes it decrypted.
	SnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	SnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

// SnakeoilKeyFile writes the snakeoil key without its passphrase to
// dir/snakeoil.key (mode 0600, for sbsign) and returns its path.
func SnakeoilKeyFile(dir string) (string, error) {
	out := filepath.Join(dir, "snakeoil.key")
	b, err := exec.Command("openssl", "pkey", "-in", SnakeoilKey, "-passin", "pass:snakeoil", "-out", out).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("decrypting %s with openssl (apt-get install openssl ovmf): %w: %s", SnakeoilKey, err, b)
	}
	return out, os.Chmod(out, 0o600)
}

var (
	toolOVMFCodeSecure = tool{name: ovmfCodeSecure, file: true, hint: "run make deps (apt-get install ovmf)"}
	toolOVMFVarsSecure = tool{name: ovmfVarsSecure, file: true, hint: "run make deps (apt-get install ovmf)"}
)

// WithSecureBoot boots OVMF's Secure Boot build with the snakeoil keys
// enrolled (SnakeoilKey signs what it runs). The vars file kept in the
// VM's directory starts as a copy of the snakeoil vars; give a fresh
// directory when switching a machine between plain and Secure Boot.
func WithSecureBoot() Option {
	return func(o *options) error {
		o.secureBoot = true
		return nil
	}
}

package testvm

// Debian's OVMF build that enforces Secure Boot (it needs SMM), and the
// vars that enroll its snakeoil key as PK, KEK and db: a boot chain
// signed with /usr/share/ovmf/PkKek-1-snakeoil.key runs, anything else is
// refused by the firmware.
const (
	ovmfCodeSecure = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVarsSecure = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	// SnakeoilKey and SnakeoilCert sign boot chains that the Secure Boot
	// VMs accept (the db key of ovmfVarsSecure).
	SnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	SnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

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

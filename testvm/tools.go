package testvm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// Paths of the firmware and helpers a VM uses (Debian packages ovmf and
// busybox-static).
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	busybox  = "/bin/busybox"
)

// tool is one thing a VM needs: a command looked up in PATH or a file.
type tool struct {
	name string // command name, or absolute file path
	file bool
	hint string
}

var (
	toolQEMU       = tool{name: "qemu-system-x86_64", hint: "run make deps (apt-get install qemu-system-x86)"}
	toolOVMFCode   = tool{name: ovmfCode, file: true, hint: "run make deps (apt-get install ovmf)"}
	toolOVMFVars   = tool{name: ovmfVars, file: true, hint: "run make deps (apt-get install ovmf)"}
	toolSwtpm      = tool{name: "swtpm", hint: "run make deps (apt-get install swtpm)"}
	toolSwtpmSetup = tool{name: "swtpm_setup", hint: "run make deps (apt-get install swtpm-tools)"}
	toolBusybox    = tool{name: busybox, file: true, hint: "run make deps (apt-get install busybox-static)"}
)

// find returns the tool's path, or an error with the install hint.
func (t tool) find() (string, error) {
	if t.file {
		if _, err := os.Stat(t.name); err != nil {
			return "", fmt.Errorf("%s not found: %s", t.name, t.hint)
		}
		return t.name, nil
	}
	p, err := exec.LookPath(t.name)
	if err != nil {
		return "", fmt.Errorf("%s not found: %s", t.name, t.hint)
	}
	return p, nil
}

// Tools checks that everything any VM configuration needs is installed:
// QEMU, OVMF, swtpm and swtpm_setup, and busybox (its nc serves guest
// forwards). The error names each missing piece with its install hint.
func Tools() error {
	var errs []error
	for _, t := range []tool{toolQEMU, toolOVMFCode, toolOVMFVars, toolSwtpm, toolSwtpmSetup, toolBusybox} {
		if _, err := t.find(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

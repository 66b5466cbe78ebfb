package attest

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

const securityfsDir = "/sys/kernel/security"

// mountSecurityfs mounts securityfs where the kernel exposes the event
// log, when path lies below it and it is not mounted yet (the demo's init
// does not mount it). It is a no-op otherwise.
func mountSecurityfs(path string) error {
	if !strings.HasPrefix(path, securityfsDir+"/") {
		return nil
	}
	err := unix.Mount("securityfs", securityfsDir, "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.EBUSY) {
		return nil // already mounted
	}
	return err
}

package reconcile

import (
	"context"
	"os"
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/plumb-os/plumb/format/workload"
)

// defaultsVersion names the isolation defaults below. It is a label on
// every container; a container created under other defaults (an older
// plumbd) is replaced on the next Apply, like one whose definition
// changed.
const defaultsVersion = "2"

// defaultCaps is Docker's default capability set without CAP_NET_RAW
// (raw sockets let a container forge packets on the device's network).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// isolation is the spec options that confine c, applied after the image's
// config. The defaults, at least Docker's: the capabilities above;
// no_new_privileges; containerd's default seccomp profile (contrib/seccomp,
// Docker's profile); /proc and /sys paths masked and read-only as
// containerd's default spec has them (kcore, keys, timer_list, sysrq-
// trigger, /sys/firmware …); namespaces of its own for PID, IPC, UTS and
// mounts. The manifest chooses the network (host by default, or none:
// loopback only), the user, a read-only root, and only explicitly the
// host's PID namespace or a privileged container.
func isolation(c *workload.Container) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if c.NetworkMode() == workload.NetworkHost {
		opts = append(opts,
			oci.WithHostNamespace(specs.NetworkNamespace),
			withHostFile("/etc/hosts"),
			withHostFile("/etc/resolv.conf"))
	}
	// NetworkNone: containerd's default spec has a network namespace of
	// its own, in which runc brings up only lo.
	if c.HostPID {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if uid, gid, ok, _ := c.UserIDs(); ok {
		opts = append(opts, oci.WithUIDGID(uid, gid))
	}
	if c.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if c.Privileged {
		return append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices, withNewPrivileges)
	}
	return append(opts,
		withCaps(defaultCaps),
		oci.WithNoNewPrivileges,      // containerd's default spec sets it too
		seccomp.WithDefaultProfile(), // after the capabilities: the profile depends on them
	)
}

// withCaps sets the bounding, permitted and effective sets to caps, and
// the inheritable and ambient sets to nothing.
func withCaps(caps []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: slices.Clone(caps), Permitted: slices.Clone(caps), Effective: slices.Clone(caps),
		}
		return nil
	}
}

// withNewPrivileges lets a privileged container's setuid programs work.
func withNewPrivileges(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Process.NoNewPrivileges = false
	return nil
}

// withHostFile binds the host's file (host network: its /etc/hosts and
// /etc/resolv.conf) read-only into the container when the host has it; a
// minimal device may have neither.
func withHostFile(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: path, Type: "bind", Source: path, Options: []string{"rbind", "ro"}})
		return nil
	}
}

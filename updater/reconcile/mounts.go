package reconcile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/workload"
)

// Mount sources are the one place where a path a workload can write to
// reaches the host's mount table. A container that can write to its mount
// can plant a symbolic link there (x -> /, or x -> /data/plumb); if the
// next container's source were resolved by path, runc would follow it and
// bind the host's root (the class of Kubernetes' subPath CVE-2017-1002101).
//
// So a mount source is never a path for runc to resolve. plumbd walks
// DataDir/<group>/<source> one element at a time from a descriptor of
// DataDir, creating missing directories with mkdirat (which never follows
// a link) and opening each element with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), O_PATH|O_DIRECTORY: a
// link, or anything but a directory, is refused. plumbd then binds that
// descriptor (/proc/self/fd/N) onto a staging point in Options.MountDir, a
// root-only directory no container sees, and the spec names the staging
// point while runc creates the task: runc binds the very directory plumbd
// verified, and swapping the path for a link after the check changes
// nothing. (runc cannot bind /proc/<plumbd>/fd/N itself: the kernel
// refuses a bind source from another mount namespace.) Once the task
// exists the staging point is unmounted, and the stored spec names
// unresolvedSource, which does not exist: a task started by anything but
// plumbd fails instead of following a path.

// unresolvedSource prefixes the source of a workload mount in a stored
// container spec; the supervisor replaces it with a verified descriptor
// for each task it creates.
const unresolvedSource = "/nonexistent/plumbd-opens-mount-sources-at-task-start"

// mountSource opens dataDir/group/source (source as the manifest writes
// it, validated) as an O_PATH directory descriptor, creating missing
// directories (mode 0755), without following any link. dataDir itself is
// plumbd's configuration, trusted.
func mountSource(dataDir, group, source string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dataDir, err)
	}
	fd, err := unix.Open(dataDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dataDir, err)
	}
	elems := []string{group}
	if source != "." {
		elems = append(elems, strings.Split(source, "/")...)
	}
	at := dataDir
	for _, el := range elems {
		at = filepath.Join(at, el)
		if el == "" || el == "." || el == ".." || strings.ContainsFunc(el, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			unix.Close(fd)
			return nil, fmt.Errorf("mount source %q: expected a plain path element, got %q", at, el)
		}
		if err := unix.Mkdirat(fd, el, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return nil, fmt.Errorf("mount source %s: creating: %w", at, err)
		}
		next, err := unix.Openat2(fd, el, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, // RESOLVE_NO_SYMLINKS: ELOOP on a link
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("mount source %s %s", at, refusal(err))
		}
		fd = next
	}
	return os.NewFile(uintptr(fd), filepath.Join(dataDir, group, source)), nil
}

// refusal says why openat2 refused an element.
func refusal(err error) string {
	switch {
	case errors.Is(err, unix.ELOOP):
		return "is a symbolic link: refused (mount sources must be real directories beneath the group's data directory)"
	case errors.Is(err, unix.ENOTDIR):
		return "is not a directory: refused"
	case errors.Is(err, unix.EXDEV):
		return "escapes the group's data directory: refused"
	case errors.Is(err, unix.ENOSYS):
		return "openat2 is not supported by this kernel (Linux 5.6 or later is needed to resolve mount sources safely)"
	}
	return "could not be opened: " + err.Error()
}

// staged is a verified mount source bound at a staging point.
type staged struct {
	f    *os.File
	path string // the staging point; "" once released
}

// stage binds f (a verified directory) at path, replacing a stale
// staging point left by a crash.
func stage(f *os.File, path string) (*staged, error) {
	unix.Unmount(path, unix.MNT_DETACH)
	os.Remove(path)
	if err := os.Mkdir(path, 0o700); err != nil {
		return nil, fmt.Errorf("staging mount source %s: %w", f.Name(), err)
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("staging mount source %s at %s: %w", f.Name(), path, err)
	}
	return &staged{f: f, path: path}, nil
}

// release unmounts the staging point and closes the descriptor.
func (s *staged) release() {
	if s.path != "" {
		unix.Unmount(s.path, unix.MNT_DETACH)
		os.Remove(s.path)
		s.path = ""
	}
	s.f.Close()
}

// checkMounts resolves every mount of c once, so that a manifest whose
// mounts are refused is refused before any container changes.
func checkMounts(dataDir, group string, c *workload.Container) error {
	for _, m := range c.Mounts {
		f, err := mountSource(dataDir, group, m.Source)
		if err != nil {
			return err
		}
		f.Close()
	}
	return nil
}

// specMounts are c's workload mounts as the stored spec holds them:
// sources not resolved yet.
func specMounts(c *workload.Container) []specs.Mount {
	var out []specs.Mount
	for _, m := range c.Mounts {
		opts := []string{"rbind", "rw", "nosuid", "nodev"}
		if m.ReadOnly {
			opts[1] = "ro"
		}
		out = append(out, specs.Mount{Type: "bind", Source: unresolvedSource + "/" + m.Source, Destination: m.Target, Options: opts})
	}
	return out
}

// resolveMounts opens c's mount sources, stages each under mountDir,
// and returns spec with each workload mount's source set to its staging
// point, and the staged sources to release once the task exists (runc
// has bound them by then).
func resolveMounts(dataDir, mountDir, group string, c *workload.Container, id string, spec *specs.Spec) (*specs.Spec, []*staged, error) {
	out := *spec
	out.Mounts = append([]specs.Mount(nil), spec.Mounts...)
	var done []*staged
	releaseAll := func() {
		for _, s := range done {
			s.release()
		}
	}
	if err := os.MkdirAll(mountDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", mountDir, err)
	}
	for n, m := range c.Mounts {
		i := workloadMount(out.Mounts, m.Target)
		if i < 0 {
			releaseAll()
			return nil, nil, fmt.Errorf("mount %s: not in the container's spec", m.Target)
		}
		f, err := mountSource(dataDir, group, m.Source)
		if err != nil {
			releaseAll()
			return nil, nil, err
		}
		s, err := stage(f, filepath.Join(mountDir, fmt.Sprintf("%s.%d", id, n)))
		if err != nil {
			f.Close()
			releaseAll()
			return nil, nil, err
		}
		done = append(done, s)
		out.Mounts[i].Source = s.path
	}
	return &out, done, nil
}

// unresolveMounts is the inverse of resolveMounts on the stored spec.
func unresolveMounts(c *workload.Container, spec *specs.Spec) *specs.Spec {
	out := *spec
	out.Mounts = append([]specs.Mount(nil), spec.Mounts...)
	for _, m := range c.Mounts {
		if i := workloadMount(out.Mounts, m.Target); i >= 0 {
			out.Mounts[i].Source = unresolvedSource + "/" + m.Source
		}
	}
	return &out
}

// workloadMount is the index of the workload mount at target in mounts
// (the last bind there: workload mounts follow the defaults), or -1.
func workloadMount(mounts []specs.Mount, target string) int {
	i := -1
	for j, sm := range mounts {
		if sm.Destination == target && sm.Type == "bind" {
			i = j
		}
	}
	return i
}

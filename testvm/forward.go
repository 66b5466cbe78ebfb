package testvm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardHelper returns dir/nc, a symlink to busybox that QEMU runs
// (as "dir/nc 127.0.0.1 PORT") for each guest connection. libslirp
// starts each helper in a new session and leaves it to init, so it
// neither dies with QEMU nor shares its process group; the private
// argv[0] is how killHelpers finds exactly this VM's helpers.
func forwardHelper(dir string) (string, error) {
	bb, err := toolBusybox.find()
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(dir, " \t\n") {
		// libslirp splits the helper command line at blanks.
		return "", fmt.Errorf("vm dir %q: expected a path without blanks when guest forwards are used", dir)
	}
	nc := filepath.Join(dir, "nc")
	if target, err := os.Readlink(nc); err == nil && target == bb {
		return nc, nil
	}
	if err := os.Remove(nc); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("replacing forward helper: %w", err)
	}
	if err := os.Symlink(bb, nc); err != nil {
		return "", fmt.Errorf("creating forward helper: %w", err)
	}
	return nc, nil
}

// killHelpers SIGKILLs every process whose argv[0] is nc and waits for
// it to end. Each is opened as a pidfd before its command line is
// checked, so a PID reused meanwhile is never signalled.
func killHelpers(nc string, log *slog.Logger) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		log.Warn("listing processes for forward helpers failed", "err", err)
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil {
			argv0, _, _ := bytes.Cut(cmdline, []byte{0})
			if string(argv0) == nc {
				if err := unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0); err == nil {
					// The pidfd turns readable when the process is gone.
					unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 2000)
					log.Info("forward helper killed", "pid", pid)
				}
			}
		}
		unix.Close(fd)
	}
}

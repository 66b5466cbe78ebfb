// Package containerdtest starts a real containerd (Debian's, with runc)
// for a test: its own root, state, socket and config under t.TempDir(),
// in its own mount namespace with a private tmpfs on /run (containerd
// 1.6 puts shim sockets and runc state under /run/containerd whatever its
// --state says), so nothing it makes outlives the test on the host.
// MountDir is a shared mount whose submounts made by the test (the
// reconciler's staged mount sources) appear in containerd's namespace,
// as they would on a device where plumbd and containerd share one.
package containerdtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/plumb-os/plumb/internal/testutil"
)

// Daemon is a running containerd.
type Daemon struct {
	Address string // its gRPC socket
	Dir     string // root of its files
	Log     string // its log file
	// MountDir is for reconcile.Options.MountDir: mounts made under it
	// propagate into containerd's mount namespace (not back).
	MountDir string
	cmd      *exec.Cmd
}

// Start starts containerd and waits until it answers. It skips under
// -short and fails with the install hint when containerd or runc is
// missing. t.Cleanup kills every task it runs, its shims and itself, by
// PID.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containerd: not in -short")
	}
	bin := testutil.RequireTool(t, "containerd", "containerd")
	testutil.RequireTool(t, "runc", "runc")
	testutil.RequireTool(t, "containerd-shim-runc-v2", "containerd")
	unshare := testutil.RequireTool(t, "unshare", "util-linux")
	if os.Geteuid() != 0 {
		t.Fatal("containerd needs root: run the test as root")
	}
	// Short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Daemon{Address: filepath.Join(dir, "c.sock"), Dir: dir, Log: filepath.Join(dir, "containerd.log")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "info"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Address, d.Address+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// A shared mount point, which the namespace below gets as a slave.
	d.MountDir = filepath.Join(dir, "mnt")
	if err := os.Mkdir(d.MountDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(d.MountDir, d.MountDir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("binding %s: %v", d.MountDir, err)
	}
	t.Cleanup(func() { syscall.Unmount(d.MountDir, syscall.MNT_DETACH) })
	if err := syscall.Mount("", d.MountDir, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatalf("making %s shared: %v", d.MountDir, err)
	}
	logf, err := os.Create(d.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// slave: what the host mounts under MountDir appears inside; the
	// host's private mounts stay private; nothing goes back out.
	d.cmd = exec.Command(unshare, "--mount", "--propagation", "slave", "--",
		"/bin/sh", "-c", `mount -t tmpfs -o mode=0755 plumb-test-run /run && exec "$0" --config "$1"`, bin, filepath.Join(dir, "config.toml"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := client.New(d.Address, client.WithTimeout(time.Second))
		if err == nil {
			_, verr := c.Version(context.Background())
			c.Close()
			if verr == nil {
				return d
			}
			err = verr
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 20s: %v\n%s", d.Address, err, tail(d.Log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the shims of this daemon (found by its socket in their
// command line), then containerd itself, by PID.
func (d *Daemon) stop(t testing.TB) {
	d.killTasks(t)
	for _, pid := range d.shims() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	}
	// The shims' children (container processes) are killed with their
	// cgroups by runc when the shims die; check nothing of ours is left.
	for _, pid := range d.shims() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killTasks kills and deletes every task in every namespace, so the
// shims exit and no container process outlives the test.
func (d *Daemon) killTasks(t testing.TB) {
	c, err := client.New(d.Address, client.WithTimeout(2*time.Second))
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, _ := c.Containers(nctx)
		for _, ctr := range ctrs {
			task, err := ctr.Task(nctx, nil)
			if err != nil {
				continue
			}
			if _, err := task.Delete(nctx, client.WithProcessKill); err != nil {
				t.Logf("containerd cleanup: deleting task %s: %v", ctr.ID(), err)
			}
		}
	}
}

// shims lists the PIDs of containerd-shim processes started for this
// daemon.
func (d *Daemon) shims() []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(args[0], "containerd-shim") && strings.Contains(string(b), d.Address) {
			out = append(out, pid)
		}
	}
	return out
}

// Shims is the number of shim processes of this daemon still running.
func (d *Daemon) Shims() int { return len(d.shims()) }

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > 30 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// LogTail is the end of containerd's log, for failure messages.
func (d *Daemon) LogTail() string { return tail(d.Log) }

package reconcile

// Tests of the reconciler alone against a real containerd + runc
// (containerdtest). Archives come from local files here (localTargets, a
// seam we own); the TUF path is tested in updater/agent's workloads tests.

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/reconcile/containerdtest"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

// localTargets serves target paths from local files.
type localTargets map[string]string

func (l localTargets) DownloadFile(_ context.Context, p string, f *os.File, _ int64, _ io.Writer) (int64, error) {
	in, err := os.Open(l[p])
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return 0, err
	}
	return io.Copy(f, in)
}

// TestHealthCheck: a container whose exec health check keeps failing is
// marked unhealthy and restarted per its policy; one whose check passes is
// healthy and keeps its task.
func TestHealthCheck(t *testing.T) {
	d := containerdtest.Start(t)
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	dir := t.TempDir()
	archive := filepath.Join(dir, "bb.tar")
	dg, err := ocitest.Write(archive, ocitest.Image{Files: ocitest.Busybox(bb), Cmd: []string{"/bin/busybox", "sleep", "100000"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Options{Address: d.Address, DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state"), RestartDelay: 100 * time.Millisecond, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c := func(name string, check ...string) workload.Container {
		return workload.Container{Name: name, Image: "plumb.test/bb@" + dg, Target: "apps/g/bb.tar",
			Health: &workload.Health{Command: check, Interval: workload.Duration(time.Second), Retries: 2}}
	}
	m := &workload.Manifest{Containers: []workload.Container{
		c("sick", "/bin/busybox", "test", "-f", "/no/such/file"),
		c("fine", "/bin/busybox", "true"),
	}}
	if err := r.Apply(t.Context(), "g", m, "sum", localTargets{"apps/g/bb.tar": archive}); err != nil {
		t.Fatalf("Apply: %v\n%s", err, d.LogTail())
	}
	status := func(name string) ContainerStatus {
		for _, s := range r.Status().Containers {
			if s.Name == name {
				return s
			}
		}
		return ContainerStatus{}
	}
	deadline := time.Now().Add(30 * time.Second)
	for status("sick").Restarts < 1 || status("fine").Health != "healthy" {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: sick %+v, fine %+v; want sick restarted, fine healthy", status("sick"), status("fine"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := status("fine"); st.Restarts != 0 || st.State != StateRunning {
		t.Errorf("fine = %+v, want running, never restarted", st)
	}
	if st := r.Status(); st.Manifest != "sum" || st.Group != "g" || st.LastError != "" {
		t.Errorf("Status = %+v", st)
	}
}

// TestApplyRefuses: an archive that does not hold the pinned image is
// refused before any container changes, and its image names are dropped.
func TestApplyRefuses(t *testing.T) {
	d := containerdtest.Start(t)
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	dgA, err := ocitest.Write(a, ocitest.Image{Name: "plumb.test/a:1", Files: ocitest.Busybox(bb), Cmd: []string{"/bin/busybox", "sleep", "100000"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ocitest.Write(b, ocitest.Image{Name: "plumb.test/a:1", Files: append(ocitest.Busybox(bb), ocitest.File{Name: "etc/b", Data: []byte("b")})}); err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Options{Address: d.Address, DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	m := &workload.Manifest{Containers: []workload.Container{{Name: "a", Image: "plumb.test/a@" + dgA, Target: "apps/g/a.tar"}}}
	err = r.Apply(t.Context(), "g", m, "sum", localTargets{"apps/g/a.tar": b})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Apply(archive without the pinned image) = %v, want ErrRefused", err)
	}
	imgs, err := r.client.ImageService().List(r.base)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 0 {
		t.Errorf("images after the refusal: %v, want none (the archive's own names dropped)", imgs)
	}
	if st := r.Status(); st.LastError == "" || len(st.Containers) != 0 {
		t.Errorf("Status = %+v, want the error and no containers", st)
	}
}

// TestAdoptAfterRestart: a new Reconciler (plumbd respawned) applying the
// same manifest adopts the running containers instead of restarting them,
// and then supervises them (a killed task is restarted).
func TestAdoptAfterRestart(t *testing.T) {
	d := containerdtest.Start(t)
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	dir := t.TempDir()
	archive := filepath.Join(dir, "bb.tar")
	dg, err := ocitest.Write(archive, ocitest.Image{Files: ocitest.Busybox(bb), Cmd: []string{"/bin/busybox", "sleep", "100000"}})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Address: d.Address, DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state"), RestartDelay: 100 * time.Millisecond, Log: testLog(t)}
	m := &workload.Manifest{Containers: []workload.Container{{Name: "a", Image: "plumb.test/bb@" + dg, Target: "apps/g/bb.tar"}}}
	src := localTargets{"apps/g/bb.tar": archive}
	waitPID := func(r *Reconciler, not uint32) uint32 {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := r.Status()
			if len(st.Containers) == 1 && st.Containers[0].State == StateRunning && st.Containers[0].PID != 0 && st.Containers[0].PID != not {
				return st.Containers[0].PID
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %+v: want a running container (PID not %d)", st, not)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r1, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Apply(t.Context(), "g", m, "sum", src); err != nil {
		t.Fatal(err)
	}
	pid := waitPID(r1, 0)
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	r2, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	// No archive source this time: the image is in containerd already.
	if err := r2.Apply(t.Context(), "g", m, "sum", nil); err != nil {
		t.Fatal(err)
	}
	if got := waitPID(r2, 0); got != pid {
		t.Errorf("after a new reconciler: PID %d, want the adopted %d", got, pid)
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitPID(r2, pid)
	if st := r2.Status().Containers[0]; st.Restarts != 1 {
		t.Errorf("after killing the adopted task: %+v, want 1 restart", st)
	}
}

func sleep50() { time.Sleep(50 * time.Millisecond) }

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

// statusInittab is the demo's inittab plus watchScript, which prints
// plumbd status and plumbd's memory on the console whenever the number of
// running containers changes (the test has no shell on the device).
const statusInittab = `::sysinit:/etc/init.d/rcS
::respawn:/usr/bin/plumbd run
::once:/etc/plumb-test-watch
::ctrlaltdel:/bin/busybox reboot
::shutdown:/bin/busybox umount -a -r
`

const watchScript = `#!/bin/sh
last=0
while :; do
	s=$(/usr/bin/plumbd status --compact)
	n=$(echo "$s" | grep -o '"state":"running"' | wc -l)
	if [ "$n" != "$last" ]; then
		echo "plumb-test: running=$n status $s"
		for p in /proc/[0-9]*; do
			if [ "$(cat $p/comm 2>/dev/null)" = plumbd ]; then
				echo "plumb-test: plumbd pid=${p#/proc/} $(grep -E 'VmHWM|VmRSS' $p/status | tr -s ' \t' ' ' | tr '\n' ' ')"
			fi
		done
		last=$n
	fi
	sleep 1
done
`

// TestWorkloadsOnDevice: the demo device (containerd and runc from Debian,
// started by rcS) gets a new OS release and a workload manifest at the
// same time: it installs and commits the OS first, then runs the
// manifest's container, and plumbd status shows it running. A second
// manifest adds a container without a reboot.
func TestWorkloadsOnDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-apps")
	f.containers = true
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	inittab, watch := filepath.Join(f.work, "inittab"), filepath.Join(f.work, "watch")
	if err := os.WriteFile(inittab, []byte(statusInittab), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(watch, []byte(watchScript), 0o755); err != nil {
		t.Fatal(err)
	}
	f.files = "  - path: /etc/inittab\n    source: " + inittab + "\n" +
		"  - path: /etc/plumb-test-watch\n    source: " + watch + "\n    mode: \"0755\"\n"
	extra := "  workloads:\n    group: demo\n"
	v1, v2 := f.build("1.0.0", "", extra), f.build("2.0.0", "", extra)
	for _, v := range []string{v1, v2} {
		if fi, err := os.Stat(filepath.Join(v, "rootfs.sqfs")); err == nil {
			t.Logf("FIGURE %s rootfs.sqfs: %d bytes", filepath.Base(v), fi.Size())
		}
	}

	// The workload: busybox writes into its data mount, then sleeps.
	archive := filepath.Join(f.work, "hello.tar")
	dg, err := ocitest.Write(archive, ocitest.Image{Files: ocitest.Busybox(bb)})
	if err != nil {
		t.Fatal(err)
	}
	hello := workload.Container{
		Name: "hello", Image: "plumb.test/hello@" + dg, Target: "apps/demo/hello.tar",
		Command: []string{"/bin/sh", "-c", `echo "$GREETING" > /out/hello && exec /bin/busybox sleep 100000`},
		Env:     map[string]string{"GREETING": "hello from the device"},
		Mounts:  []workload.Mount{{Source: "out", Target: "/out"}},
	}
	archives := map[string]string{hello.Target: archive}

	f.publish(v1)
	d := f.flash(t, v1, "device")
	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	published := time.Now()
	f.publish(v2)
	if _, err := f.repo.PublishWorkloads(ctx, "demo", &workload.Manifest{Containers: []workload.Container{hello}}, archives, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `release committed" version=2\.0\.0`)
	committed := time.Now()
	d.waitFor(mark, `workloads reconciled" group=demo`)
	t.Logf("FIGURE publish (OS + manifest) to committed: %.1fs; committed to workloads reconciled: %.1fs",
		committed.Sub(published).Seconds(), time.Since(committed).Seconds())
	// Workloads are never touched before the commit: the reconcile line
	// comes after the commit line.
	con := vm.Console()
	if i, j := strings.LastIndex(con, `release committed" version=2.0.0`), strings.LastIndex(con, `workloads reconciled" group=demo`); j < i {
		t.Errorf("workloads reconciled before the OS was committed")
	}
	st := d.waitFor(mark, `plumb-test: running=1 status (\{.*"workloads":\{.*"name":"hello".*"state":"running".*)`)
	t.Logf("plumbd status: %s", st[1])
	if !strings.Contains(st[1], `"digest":"`+dg+`"`) || !strings.Contains(st[1], `"version":"2.0.0"`) {
		t.Errorf("plumbd status %s: want hello with digest %s on 2.0.0", st[1], dg)
	}
	mem := d.waitFor(mark, `plumb-test: plumbd (pid=\d+ .*VmHWM.*)`)
	t.Logf("FIGURE plumbd memory with the reconciler active (one container): %s", mem[1])

	// A second manifest: one more container, no reboot.
	mark = vm.Mark()
	second := hello
	second.Name, second.Mounts = "second", nil
	second.Command = []string{"/bin/busybox", "sleep", "100000"}
	published = time.Now()
	if _, err := f.repo.PublishWorkloads(ctx, "demo", &workload.Manifest{Containers: []workload.Container{hello, second}}, archives, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	d.waitFor(mark, `plumb-test: running=2 status .*"name":"second".*"state":"running"`)
	t.Logf("FIGURE manifest publish to the new container running in plumbd status (poll 2s, status sampled every 1s): %.1fs", time.Since(published).Seconds())
	mem = d.waitFor(mark, `plumb-test: plumbd (pid=\d+ .*VmHWM.*)`)
	t.Logf("FIGURE plumbd memory with the reconciler active (two containers): %s", mem[1])
	vm.Close()

	if got := d.readData("apps/demo/out/hello"); got != "hello from the device\n" {
		t.Errorf("data partition apps/demo/out/hello = %q, want what the container wrote", got)
	}
}

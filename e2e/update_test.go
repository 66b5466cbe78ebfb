package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestUpdate: a device running v1 pulls v2 from a TUF repository served
// over HTTPS on 127.0.0.1, installs it into slot b, reboots into it on
// trial, passes its health checks and commits; after a power cycle plumbd
// status shows v2 committed and slot a's entry stays as the fallback.
func TestUpdate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-update")
	v1, v2 := f.build("1.0.0", "", ""), f.build("2.0.0", "", "")
	f.publish(v1)
	d := f.flash(t, v1, "device")
	d.writeData("canary", []byte("written before the update\n"))

	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	published := time.Now()
	f.publish(v2)
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `release committed" version=2\.0\.0`)
	t.Logf("publish to commit: %.1fs", time.Since(published).Seconds())
	st := f.srv.Stats()
	t.Logf("server: %d requests, %d answered 304, %d bytes sent", st.Requests, st.NotModified, st.BytesOut)
	vm.Close()

	// Power on again: the device boots v2 from slot b, committed.
	d.powerOn()
	d.waitFor(0, `plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"update":\{"phase":"committed".*"event":"committed 2\.0\.0"`)
	d.vm.Close()

	entries := d.entries()
	for _, want := range []string{"plumb-2.0.0.conf", "plumb-1.0.0.conf"} {
		if !strings.Contains(entries, want+"\n") {
			t.Errorf("ESP entries %q lack %s", entries, want)
		}
	}
	if got := d.readData("canary"); got != "written before the update\n" {
		t.Errorf("canary on the data partition after the update = %q", got)
	}
}

// TestRollbackBootFailure: a release whose init never starts is tried by
// systemd-boot's boot counting until its tries run out, then the previous
// slot boots again; plumbd there reports the rollback, marks the release
// bad and removes its entry; a later good release installs normally.
func TestRollbackBootFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-bootfail")
	v1 := f.build("1.0.0", "", "")
	bad := f.build("2.0.0", "console=ttyS0 panic=5 loglevel=4 init=/no/such/init", "")
	good := f.build("3.0.0", "", "")
	f.publish(v1)
	d := f.flash(t, v1, "device")
	d.writeData("canary", []byte("keep me\n"))

	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	published := time.Now()
	f.publish(bad)
	d.waitFor(mark, `slot installed on trial" slot=b version=2\.0\.0`)
	d.waitFor(mark, `root found" device=/dev/vda3`) // the trial boot reaches plumb-init
	d.waitFor(mark, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	d.waitFor(mark, `rolled back" from=2\.0\.0 to=1\.0\.0 reason="boot failed"`)
	tries := strings.Count(vm.Console(), `starting init" path=/no/such/init`)
	t.Logf("rolled back %.1fs after publishing; boots of 2.0.0 that failed: %d", time.Since(published).Seconds(), tries)
	if tries < 1 || tries > 3 {
		t.Errorf("2.0.0 was tried %d times, want 1 to 3", tries)
	}
	vm.Close()

	// plumbd status reports it after a power cycle too.
	vm = d.powerOn()
	d.waitFor(0, `plumb: status \{.*"version":"1\.0\.0".*"slot":"a".*"bad":\{"2\.0\.0":"boot failed"\},"event":"rolled back from 2\.0\.0: boot failed"`)
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)

	mark = vm.Mark()
	f.publish(good)
	d.waitFor(mark, `release committed" version=3\.0\.0`)
	vm.Close()
	entries := d.entries()
	if strings.Contains(entries, "plumb-2.0.0") || !strings.Contains(entries, "plumb-3.0.0.conf\n") {
		t.Errorf("ESP entries after rollback and a good update = %q, want 3.0.0 and no 2.0.0", entries)
	}
	if got := d.readData("canary"); got != "keep me\n" {
		t.Errorf("canary on the data partition = %q", got)
	}
}

// TestRollbackHealthCheck: a release that boots but fails a health check
// is not committed: plumbd marks its entry out of tries and reboots into
// the previous slot, which records the release as bad with the reason.
func TestRollbackHealthCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-health")
	v1 := f.build("1.0.0", "", "")
	bad := f.build("2.0.0", "", "  health:\n    - command: \"test -e /etc/no-such-file\"\n      timeout: 5s\n")
	f.publish(v1)
	d := f.flash(t, v1, "device")

	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	published := time.Now()
	f.publish(bad)
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `trial failed, rebooting into the previous slot" version=2\.0\.0`)
	d.waitFor(mark, `rolled back" from=2\.0\.0 to=1\.0\.0 reason="health check command test -e /etc/no-such-file`)
	t.Logf("rolled back %.1fs after publishing", time.Since(published).Seconds())
	if n := strings.Count(vm.Console(), "version=2.0.0 slot=b tpm="); n != 1 {
		t.Errorf("2.0.0 booted %d times, want once (its entry is marked out of tries)", n)
	}
	vm.Close()

	d.powerOn()
	d.waitFor(0, `plumb: status \{.*"version":"1\.0\.0".*"slot":"a".*"event":"rolled back from 2\.0\.0: health check command test -e /etc/no-such-file`)
	d.vm.Close()
	if entries := d.entries(); strings.Contains(entries, "plumb-2.0.0") {
		t.Errorf("ESP still holds 2.0.0's entry: %q", entries)
	}
}

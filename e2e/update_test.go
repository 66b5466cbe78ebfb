package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

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

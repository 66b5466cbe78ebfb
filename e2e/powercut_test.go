package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPowerCut kills QEMU without warning at distinct points of an update
// from 1.0.0 to 2.0.0, powers the device on again and checks each time that
// it boots a good slot, ends with 2.0.0 committed, and that a canary file
// on the data partition is intact. The points are found by watching the
// console for the agent's and the init's log lines.
func TestPowerCut(t *testing.T) {
	// Parallel subtests run after this function returns: the context must
	// outlive it, until the subtests are done.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	f := newFleet(t, ctx, "qemu-powercut")
	v1, v2 := f.build("1.0.0", "", ""), f.build("2.0.0", "", "")
	f.publish(v1)
	f.publish(v2) // the device finds 2.0.0 at its first poll

	points := []struct {
		name    string
		pattern string        // the console line to cut at
		delay   time.Duration // after the line
	}{
		{"first poll, metadata refreshed", `msg="metadata refreshed"`, 0},
		{"download started", `msg="downloading release"`, 0},
		{"mid-download", `msg="downloading release"`, 1500 * time.Millisecond},
		{"written and verified, before boot files", `msg="slot written and verified"`, 0},
		{"kernel on the ESP, before initrd", `msg="boot file written" file=/plumb/b/vmlinuz`, 0},
		{"right after the trial entry", `msg="slot installed on trial"`, 0},
		{"rebooting", `msg="rebooting into the new release"`, 0},
		{"trial boot, in the initramfs", `msg="root found" device=/dev/vda3`, 0},
		{"trial boot, plumbd started", `plumbd \S+ started: .*version=2\.0\.0 slot=b`, 0},
		{"commit renamed, state not yet saved", `msg="slot committed" slot=b`, 0},
		{"right after the commit", `msg="release committed" version=2\.0\.0`, 0},
	}
	type outcome struct {
		name, result string
		seconds      float64
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	committed := `msg="release committed" version=2\.0\.0|plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"phase":"committed"`
	for i, p := range points {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel() // two VMs at a time: TCG runs one vCPU per core
			d := f.flash(t, v1, fmt.Sprintf("cut%02d", i))
			d.writeData("canary", []byte("canary\n"))
			result := "FAILED"
			start := time.Now()
			defer func() {
				mu.Lock()
				outcomes = append(outcomes, outcome{p.name, result, time.Since(start).Seconds()})
				mu.Unlock()
			}()

			vm := d.powerOn()
			d.waitFor(0, p.pattern)
			time.Sleep(p.delay)
			if err := vm.Kill(); err != nil {
				t.Fatal(err)
			}
			vm = d.powerOn()
			got := d.waitFor(0, `plumbd \S+ started: .*version=(\S+) slot=([ab])`)
			first := fmt.Sprintf("booted %s from slot %s", got[1], got[2])
			d.waitFor(0, committed)
			vm.Close()
			if c := d.readData("canary"); c != "canary\n" {
				t.Errorf("canary = %q after the power cut", c)
				return
			}
			if e := d.entries(); !strings.Contains(e, "plumb-2.0.0.conf\n") {
				t.Errorf("ESP entries = %q, want plumb-2.0.0.conf committed", e)
				return
			}
			result = first + ", then 2.0.0 committed, canary intact"
		})
	}
	t.Cleanup(func() {
		t.Logf("%-42s %-60s %s", "power cut at", "outcome", "seconds")
		for _, p := range points {
			for _, o := range outcomes {
				if o.name == p.name {
					t.Logf("%-42s %-60s %.0f", o.name, o.result, o.seconds)
				}
			}
		}
	})
}

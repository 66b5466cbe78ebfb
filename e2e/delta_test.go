package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeltaUpdateVM: a device running v1 updates to v2 with a delta
// bundle. The pair is a realistic point release: v1 boots Debian's
// 6.1.0-55 cloud kernel, v2 the 6.1.0-56 one (every module moves to a new
// ABI directory), plus the version. plumbd downloads only the bundle,
// applies it from slot a into slot b, boots v2 and commits it; plumbd
// status in the trial boot says the update went by delta and fetched the
// bundle's bytes. One boot of v1, one of v2. The bytes
// the server sent from publishing v2 to the slot being written (metadata
// included, counted by the server) must be under the bundle's size x 1.05.
//
// The device also holds the wake-up channel (issue 16, docs/wake.md), and
// polls only hourly (poll and wake.poll 1h): after its poll at start, only
// the channel's nudge can start the download within the test. The console
// shows the wake-up before the download, the trial boot's plumbd status
// shows the channel's last wake-up (stale: from the boot before), and
// the server holds one stream for the device after the reboot. Then the
// fallback, on the same boot: 2.0.0 polls every 5 s when its channel is
// down (wake.poll 1h while up); the fleet service goes away (its database
// closed: the wake endpoint answers 500) while the repository is still
// served, and the device polls again.
func TestDeltaUpdateVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-delta")
	oldKernel := func(text string) string {
		return strings.Replace(text, "linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-55-cloud-amd64", 1)
	}
	v1, v2 := f.build("1.0.0", "", "", oldKernel, withWake("1h")), f.build("2.0.0", "", "", withWake("5s"))
	f.publish(v1)
	d := f.flash(t, v1, "device")

	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	// The wake-up channel is up, and the poll at start is done (its
	// result reached the server): the next poll is an hour away.
	d.waitFor(0, `msg="wake channel up"`)
	f.eventually(2*time.Minute, func() error {
		for _, r := range f.reports() {
			if strings.Contains(r, `"last_result":"no update"`) {
				return nil
			}
		}
		return fmt.Errorf("no report of the poll at start yet: %q", f.reports())
	})
	mark := vm.Mark()
	before := f.srv.Stats()
	published := time.Now()
	f.publishDeltas(v2)
	publishSecs := time.Since(published).Seconds()
	timestamped := time.Now() // the publish wrote timestamp.json last
	deltaFiles, _ := filepath.Glob(filepath.Join(f.work, "repo", "repository", "targets", f.hardware, "2.0.0", "*.from-1.0.0.delta"))
	if len(deltaFiles) != 1 {
		t.Fatalf("delta target files %q, want one", deltaFiles)
	}
	dfi, err := os.Stat(deltaFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	ffi, err := os.Stat(filepath.Join(v2, "rootfs.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	deltaSize, fullSize := dfi.Size(), ffi.Size()

	start := time.Now()
	d.waitFor(mark, `msg="woken: the repository's timestamp changed, polling now"`)
	woken := time.Since(timestamped)
	d.waitFor(mark, `msg="downloading delta" version=2\.0\.0`)
	downloading := time.Since(timestamped)
	if c := vm.Console(); strings.Index(c, `msg="woken:`) > strings.Index(c, `msg="downloading delta"`) {
		t.Errorf("the download started before the wake-up: the device polled by itself")
	}
	t.Logf("wake-up channel: publish done (timestamp.json written) to the device woken %.1fs, to its download start %.1fs (poll: 1h)", woken.Seconds(), downloading.Seconds())
	// The kernel (6.1.0-55 -> -56, LZ4 bzImages) went as a patch of its
	// decompressed payload, re-compressed by plumbd's liblz4.
	d.waitFor(mark, `msg="delta applied" .*kernels=1`)
	d.waitFor(mark, `msg="slot written from delta and verified" version=2\.0\.0 slot=b`)
	written := time.Since(start).Seconds()
	sent := f.srv.Stats().BytesOut - before.BytesOut
	// plumbd status, printed by the trial boot's rcS before plumbd runs:
	// the update went by delta, and how many bytes it fetched.
	status := d.waitFor(mark, `plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"update":\{"phase":"rebooting".*"method":"delta","fetched":(\d+)`)
	// The same status: the wake-up channel's last wake-up, from the boot
	// before (stale: this boot's plumbd has not started yet).
	d.waitFor(mark, `plumb: status \{.*"wake":\{"state":"(connected|down)","since":"[^"]+","last_wake":"[^"]+".*"stale":true\}`)
	d.waitFor(mark, `release committed" version=2\.0\.0`)
	// 2.0.0's plumbd holds the channel too. Its stream replaced the one
	// 1.0.0 held before the reboot (one per device), whether or not the
	// server had seen that one end.
	d.waitFor(mark, `msg="wake channel up"`)
	if n := f.srv.Held(); n != 1 {
		t.Errorf("wake streams held after the reboot: %d, want 1 (the device's newest)", n)
	}
	// Its status reports carry the channel's state.
	f.eventually(time.Minute, func() error {
		if r := f.reports(); len(r) != 1 || !strings.Contains(r[0], `"wake":{"state":"`) {
			return fmt.Errorf("the device's last report %q has no wake state", r)
		}
		return nil
	})

	// The fallback. Polls of the unchanged timestamp.json are the
	// requests answered 304; while the channel is up there is at most one
	// (a 5 s wait begun before it came up).
	mark = vm.Mark()
	polled := f.srv.Stats().NotModified
	f.srv.Close()
	cut := time.Now()
	d.waitFor(mark, `msg="wake channel down, polling meanwhile"`)
	f.eventually(2*time.Minute, func() error {
		if n := f.srv.Stats().NotModified - polled; n < 3 {
			return fmt.Errorf("%d polls answered since the fleet service closed, want 3 (poll: 5s)", n)
		}
		return nil
	})
	t.Logf("fallback: 3 polls %.1fs after the fleet service closed (poll: 5s while the channel is down)", time.Since(cut).Seconds())
	t.Logf("delta %d bytes, full image %d bytes (delta = %.2f%% of full); publish with delta %.1fs", deltaSize, fullSize, 100*float64(deltaSize)/float64(fullSize), publishSecs)
	t.Logf("server sent %d bytes from publish to slot written (%.3f x delta); download+apply %.1fs; publish to commit %.1fs",
		sent, float64(sent)/float64(deltaSize), written, time.Since(published).Seconds())
	if float64(sent) >= float64(deltaSize)*1.05 {
		t.Errorf("server sent %d bytes for the update, want < delta size %d x 1.05", sent, deltaSize)
	}
	if status[1] != fmt.Sprint(deltaSize) {
		t.Errorf("plumbd status says %s bytes fetched, want the delta's %d", status[1], deltaSize)
	}
	if strings.Contains(vm.Console(), `msg="delta not used`) {
		t.Errorf("the device fell back to the full image")
	}
}

// withWake is a recipe edit: the agent holds the wake-up channel
// (agent.wake) and polls hourly while it is up, every poll while it is
// down. With poll 1h, the channel is the only way a publish reaches it
// within a test.
func withWake(poll string) func(string) string {
	return func(text string) string {
		return strings.Replace(text, "  poll: 2s\n", "  poll: "+poll+"\n  wake:\n    poll: 1h\n", 1)
	}
}

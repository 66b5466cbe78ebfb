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
func TestDeltaUpdateVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-delta")
	oldKernel := func(text string) string {
		return strings.Replace(text, "linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-55-cloud-amd64", 1)
	}
	v1, v2 := f.build("1.0.0", "", "", oldKernel), f.build("2.0.0", "", "")
	f.publish(v1)
	d := f.flash(t, v1, "device")

	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	before := f.srv.Stats()
	published := time.Now()
	f.publishDeltas(v2)
	publishSecs := time.Since(published).Seconds()
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
	d.waitFor(mark, `msg="downloading delta" version=2\.0\.0`)
	// The kernel (6.1.0-55 -> -56, LZ4 bzImages) went as a patch of its
	// decompressed payload, re-compressed by plumbd's liblz4.
	d.waitFor(mark, `msg="delta applied" .*kernels=1`)
	d.waitFor(mark, `msg="slot written from delta and verified" version=2\.0\.0 slot=b`)
	written := time.Since(start).Seconds()
	sent := f.srv.Stats().BytesOut - before.BytesOut
	// plumbd status, printed by the trial boot's rcS before plumbd runs:
	// the update went by delta, and how many bytes it fetched.
	status := d.waitFor(mark, `plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"update":\{"phase":"rebooting".*"method":"delta","fetched":(\d+)`)
	d.waitFor(mark, `release committed" version=2\.0\.0`)
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

package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/testvm"
)

// bootTimeout bounds one boot under TCG on a loaded 2-core machine; a quiet
// one takes about 10 s.
const bootTimeout = 3 * time.Minute

// TestBootDemo boots the demo disk under OVMF with swtpm, as a device would
// start from a freshly flashed disk, and waits for plumbd to report its
// release, slot a and the TPM.
func TestBootDemo(t *testing.T) {
	dir, m := demoBuild(t)
	if err := testvm.Tools(); err != nil {
		t.Fatal(err)
	}
	vmDir := t.TempDir()
	disk := filepath.Join(vmDir, "disk.img")
	if err := testvm.CopyImage(disk, filepath.Join(dir, builder.DiskFile)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	vm, err := testvm.Start(ctx, vmDir, testvm.WithDisk(disk), testvm.WithTPM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })

	started := regexp.MustCompile(`plumbd \S+ started: release=(\S+) version=(\S+) slot=(\S+) tpm=(\S+)`)
	got, err := vm.WaitFor(ctx, started)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plumbd started %.1fs after QEMU started", time.Since(vm.Started()).Seconds())
	if got[1] != m.Name || got[2] != m.Version || got[3] != "a" || got[4] != "true" {
		t.Errorf("plumbd reported release=%s version=%s slot=%s tpm=%s, want %s %s a true", got[1], got[2], got[3], got[4], m.Name, m.Version)
	}
	// The status JSON that init printed, as plumbd status makes it.
	status := regexp.MustCompile(`plumb: status \{.*"slot":"a".*"data_mounted":true.*"tpm":\{"present":true`)
	if _, err := vm.WaitFor(ctx, status); err != nil {
		t.Errorf("plumbd status: %v", err)
	}
}

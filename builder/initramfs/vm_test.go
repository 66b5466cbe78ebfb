package initramfs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/verity"
)

const (
	vmUUIDA    = "5e1a0c3d-7b2f-4a61-9d0e-3c8b2a1f0a01"
	vmUUIDB    = "5e1a0c3d-7b2f-4a61-9d0e-3c8b2a1f0b02"
	vmUUIDData = "5e1a0c3d-7b2f-4a61-9d0e-3c8b2a1f0d04"
)

// vmModules are what the Debian cloud kernel needs as modules to reach a
// squashfs root on a virtio disk (ext4 is built in).
var vmModules = []string{"virtio_pci", "virtio_blk", "squashfs", "overlay"}

// buildPlumbInit compiles cmd/plumb-init the way the image build does.
func buildPlumbInit(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go not found in PATH")
	}
	out := filepath.Join(t.TempDir(), "plumb-init")
	cmd := exec.CommandContext(t.Context(), goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/plumb-os/plumb/cmd/plumb-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building plumb-init: %v: %s", err, b)
	}
	return out
}

// testRootSquashfs makes a tiny root: busybox-static and an /sbin/init
// script that reports what it sees and powers off.
func testRootSquashfs(t *testing.T) string {
	t.Helper()
	bb, err := extractedDeb(debPath(t, "busybox-static_*.deb"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "run", "data", "etc", "var/lib", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(bb, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"bin/sh", "bin/cat", "bin/touch", "bin/echo", "bin/grep", "bin/sleep", "sbin/poweroff"} {
		if err := os.Symlink("/bin/busybox", filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
etc=ro; touch /etc/written 2>/dev/null && etc=rw
var=ro; touch /var/lib/written 2>/dev/null && var=rw
data=no; grep -q ' /data ext4 ' /proc/mounts && touch /data/written && data=rw
echo "PLUMB-TEST-ROOT etc=$etc var=$var data=$data pid=$$ slot=$(cat /run/plumb/boot.json)"
poweroff -f
`
	if err := os.WriteFile(filepath.Join(root, "sbin/init"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("plumb-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sqfs := filepath.Join(t.TempDir(), "root.sqfs")
	if out, err := exec.CommandContext(t.Context(), "mksquashfs", root, sqfs, "-comp", "zstd", "-noappend", "-all-root", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	return sqfs
}

// testDisk makes a GPT disk like Plumb's: ESP (empty), plumb-root-a (empty),
// plumb-root-b (the squashfs), plumb-data (ext4 made by mkfs.ext4 in a
// separate file and copied in at the partition's offset).
func testDisk(t *testing.T, sqfs string) string {
	t.Helper()
	const mib = 1 << 20
	fi, err := os.Stat(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	rootMiB := verity.SlotSize(fi.Size())/mib + 1 // room for a verity tree
	dataImg := filepath.Join(t.TempDir(), "data.ext4")
	if out, err := exec.CommandContext(t.Context(), "mkfs.ext4", "-q", "-F", "-L", "plumb-data", dataImg, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	// Sector numbers (512 bytes): 1 MiB alignment.
	espStart, espMiB := int64(2048), int64(4)
	aStart := espStart + espMiB*2048
	bStart := aStart + rootMiB*2048
	dataStart := bStart + rootMiB*2048
	total := (dataStart + 16*2048 + 2048) * 512
	disk := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(total); err != nil {
		t.Fatal(err)
	}
	part := func(n int, start, sizeMiB int64) string {
		return fmt.Sprintf("%d:%d:%d", n, start, start+sizeMiB*2048-1)
	}
	out, err := exec.CommandContext(t.Context(), "sgdisk",
		"-n", part(1, espStart, espMiB), "-t", "1:ef00", "-c", "1:ESP",
		"-n", part(2, aStart, rootMiB), "-t", "2:8304", "-c", "2:plumb-root-a", "-u", "2:"+vmUUIDA,
		"-n", part(3, bStart, rootMiB), "-t", "3:8304", "-c", "3:plumb-root-b", "-u", "3:"+vmUUIDB,
		"-n", part(4, dataStart, 16), "-t", "4:8300", "-c", "4:plumb-data", "-u", "4:"+vmUUIDData,
		disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, out)
	}
	copyAt := func(src string, sector int64) {
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if _, err := io.Copy(io.NewOffsetWriter(f, sector*512), in); err != nil {
			t.Fatal(err)
		}
	}
	copyAt(sqfs, bStart)
	copyAt(dataImg, dataStart)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return disk
}

// vmResult is what a boot printed.
type vmResult struct {
	line    string        // the first line containing the wanted marker, "" if none
	elapsed time.Duration // from QEMU's start to that line
	exited  bool          // QEMU ended by itself (poweroff or reboot with -no-reboot)
	output  string        // everything QEMU printed
}

// bootVM boots kernel+initrd on disk with QEMU (direct kernel boot, TCG) and
// waits until QEMU exits or timeout passes, noting the first line holding
// marker. QEMU is killed by PID when the test ends.
func bootVM(t *testing.T, vmlinuz, initrd, disk, appendLine, marker string, timeout time.Duration) vmResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.Command("qemu-system-x86_64",
		"-accel", "tcg", "-machine", "q35", "-m", "512", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", vmlinuz, "-initrd", initrd, "-append", appendLine,
		"-drive", "file="+disk+",if=virtio,format=raw")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})

	var res vmResult
	var all strings.Builder
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				res.exited = true
				res.output = all.String()
				return res
			}
			all.WriteString(l + "\n")
			if res.line == "" && strings.Contains(l, marker) {
				res.line, res.elapsed = l, time.Since(start)
			}
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for l := range lines {
				all.WriteString(l + "\n")
			}
			res.output = all.String()
			return res
		}
	}
}

type vmFixture struct {
	vmlinuz, initrd, disk string
}

func newVMFixture(t *testing.T) vmFixture {
	t.Helper()
	vmlinuz, initrd := vmKernel(t, vmModules)
	return vmFixture{vmlinuz: vmlinuz, initrd: initrd, disk: testDisk(t, testRootSquashfs(t))}
}

// vmKernel returns the test kernel and an initramfs with plumb-init and
// the given modules, and skips the test under -short or without the tools
// a VM fixture needs.
func vmKernel(t *testing.T, modules []string) (vmlinuz, initrd string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: skipped under -short")
	}
	needTool(t, "qemu-system-x86_64", "qemu-system-x86")
	needTool(t, "sgdisk", "gdisk")
	needTool(t, "mksquashfs", "squashfs-tools")
	needTool(t, "mkfs.ext4", "e2fsprogs")
	kdir := kernel(t)
	initrd = filepath.Join(t.TempDir(), "initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	err = Build(t.Context(), f, Options{
		Init: buildPlumbInit(t), KernelTree: kernelTree(t), KernelRelease: testRelease,
		Modules: modules, ModTime: testModTime,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(kdir, "boot", "vmlinuz-"+testRelease), initrd
}

// TestBootVM boots the Debian cloud kernel with the initramfs on a Plumb
// style disk and checks that the root's init runs in slot b with writable
// /etc and /var, /data mounted, and boot.json written.
func TestBootVM(t *testing.T) {
	t.Parallel()
	fx := newVMFixture(t)
	res := bootVM(t, fx.vmlinuz, fx.initrd, fx.disk,
		"root=PARTUUID="+vmUUIDB+" ro console=ttyS0 panic=-1 plumb.slot=b", "PLUMB-TEST-ROOT", 180*time.Second)
	if res.line == "" {
		t.Fatalf("no PLUMB-TEST-ROOT line; QEMU exited=%v; output:\n%s", res.exited, res.output)
	}
	t.Logf("root init ran %.1f s after QEMU started: %s", res.elapsed.Seconds(), res.line)
	for _, want := range []string{"etc=rw", "var=rw", "data=rw", "pid=1 "} {
		if !strings.Contains(res.line, want) {
			t.Errorf("root reports %q, want %q in it", res.line, want)
		}
	}
	_, js, _ := strings.Cut(res.line, "slot=")
	var bi bootrecord.BootInfo
	if err := json.Unmarshal([]byte(js), &bi); err != nil {
		t.Fatalf("boot.json %q: %v", js, err)
	}
	want := bootrecord.BootInfo{Slot: "b", CmdlineSlot: "b", RootPARTUUID: vmUUIDB,
		RootDevice: "/dev/vda3", DataDevice: "/dev/vda4", DataMounted: true,
		// This VM has no TPM: plumb-init boots on and says why it measured nothing.
		MeasureError: "no TPM (/dev/tpmrm0, /dev/tpm0)",
		InitMillis:   bi.InitMillis, UptimeMillis: bi.UptimeMillis}
	if bi != want {
		t.Errorf("boot.json = %+v, want %+v", bi, want)
	}
	if bi.InitMillis <= 0 || bi.UptimeMillis <= bi.InitMillis {
		t.Errorf("boot.json times init_ms=%d uptime_ms=%d, want 0 < init < uptime", bi.InitMillis, bi.UptimeMillis)
	}
	for _, want := range []string{"plumb-init: level=INFO msg=\"modules loaded\" count=8", "plumb-init: level=INFO msg=\"freed initramfs\""} {
		if !strings.Contains(res.output, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if !res.exited {
		t.Errorf("QEMU did not exit after poweroff -f")
	}
	if testing.Verbose() {
		t.Logf("console:\n%s", res.output)
	}
}

// TestBootVMRootMissing: a root PARTUUID that is on no disk makes the
// early init give up after its wait and reboot (QEMU exits: -no-reboot).
func TestBootVMRootMissing(t *testing.T) {
	t.Parallel()
	fx := newVMFixture(t)
	res := bootVM(t, fx.vmlinuz, fx.initrd, fx.disk,
		"root=PARTUUID=00000000-0000-4000-8000-000000000000 ro console=ttyS0 panic=-1", "plumb-init: level=ERROR msg=\"FATAL: boot failed\"", 180*time.Second)
	if res.line == "" || !strings.Contains(res.line, "no partition with that PARTUUID") {
		t.Fatalf("no FATAL line naming the missing PARTUUID; output:\n%s", res.output)
	}
	t.Logf("gave up %.1f s after QEMU started: %s", res.elapsed.Seconds(), res.line)
	if !res.exited {
		t.Errorf("QEMU still running: the early init did not reboot")
	}
	if !strings.Contains(res.output, "rebooting") {
		t.Errorf("console lacks the rebooting notice")
	}
}

package testvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/plumb-os/plumb/internal/testutil"
)

// The VM tests boot the Debian cloud kernel from the package cache.
// debGlob is where the cached .deb of a package is (PLUMB_CACHE, else the
// repository's .cache).
func debGlob(pkg string) string {
	return filepath.Join(testutil.CacheDir(nil), "debs", pkg+"_*.deb")
}

// bootTimeout bounds each wait for a console line.
const bootTimeout = 90 * time.Second

var (
	extractOnce sync.Once
	extractDir  string
	extractErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if extractDir != "" {
		os.RemoveAll(extractDir)
	}
	os.Exit(code)
}

// guestFiles extracts the kernel and busybox packages once per test
// binary and returns the directory they are in.
func guestFiles(t *testing.T) string {
	t.Helper()
	extractOnce.Do(func() {
		extractDir, extractErr = os.MkdirTemp("", "testvm-debs-")
		if extractErr != nil {
			return
		}
		for _, pkg := range []string{"linux-image-*-cloud-amd64", "busybox-static"} {
			debs, _ := filepath.Glob(debGlob(pkg))
			if len(debs) == 0 {
				extractErr = fmt.Errorf("%s not found: run make deps (it downloads %s into .cache/debs)", debGlob(pkg), pkg)
				return
			}
			if out, err := exec.Command("dpkg-deb", "-x", debs[0], extractDir).CombinedOutput(); err != nil {
				extractErr = fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
				return
			}
		}
	})
	if extractErr != nil {
		t.Fatal(extractErr)
	}
	return extractDir
}

// kernel returns the extracted vmlinuz.
func kernel(t *testing.T) string {
	t.Helper()
	k, _ := filepath.Glob(filepath.Join(guestFiles(t), "boot/vmlinuz-*"))
	if len(k) != 1 {
		t.Fatalf("want one boot/vmlinuz-* in the kernel package, got %q", k)
	}
	return k[0]
}

// vmTest skips under -short and fails with the install hint when a tool
// is missing.
func vmTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if err := Tools(); err != nil {
		t.Fatal(err)
	}
	t.Parallel()
}

// start starts a VM closed at the end of the test, logging to the test
// log and showing the console tail if the test fails.
func start(t *testing.T, ctx context.Context, dir string, opts ...Option) *VM {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
	v, err := Start(ctx, dir, append([]Option{WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("console%s", v.con.tail(40))
		}
	})
	return v
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor waits for pattern after m and logs the seconds since QEMU's start.
func waitFor(t *testing.T, v *VM, m Mark, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	got, err := v.WaitForAfter(ctx, m, regexp.MustCompile(pattern))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%5.1f s: %q", time.Since(v.Started()).Seconds(), got[0])
	return got
}

// gone reports whether no process has pid.
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestDirectKernelBoot boots the kernel without UEFI, initrd or disk:
// it panics for lack of a root filesystem. With -no-reboot QEMU then
// exits cleanly; without, the machine reboots inside the same QEMU.
func TestDirectKernelBoot(t *testing.T) {
	vmTest(t)
	t.Run("no-reboot", func(t *testing.T) {
		t.Parallel()
		v := start(t, t.Context(), t.TempDir(), WithoutUEFI(), WithNoReboot(),
			WithKernel(kernel(t), "", "console=ttyS0 panic=-1"))
		waitFor(t, v, 0, `Linux version (\S+)`)
		waitFor(t, v, 0, `VFS: Unable to mount root fs`)
		waitFor(t, v, 0, `Kernel panic - not syncing`)
		if err := v.Wait(); err != nil {
			t.Errorf("Wait() after a reboot under -no-reboot = %v, want nil", err)
		}
		_, err := v.WaitFor(t.Context(), regexp.MustCompile(`never printed`))
		if err == nil || !strings.Contains(err.Error(), "qemu exited before a match") {
			t.Errorf("WaitFor after exit = %v, want qemu exited before a match", err)
		}
	})
	t.Run("reboot in place", func(t *testing.T) {
		t.Parallel()
		v := start(t, t.Context(), t.TempDir(), WithoutUEFI(),
			WithKernel(kernel(t), "", "console=ttyS0 panic=-1"))
		waitFor(t, v, 0, `Kernel panic - not syncing`)
		m := v.Mark()
		waitFor(t, v, m, `Linux version`)
		waitFor(t, v, m, `Kernel panic - not syncing`)
		if n := strings.Count(v.Console(), "Linux version"); n < 2 {
			t.Errorf("console has %d boots, want at least 2", n)
		}
	})
}

// TestUEFITPM boots the kernel through OVMF with swtpm: the kernel finds
// the TPM and OVMF's event log, also after a reboot inside the same QEMU.
// A second power-on of the same machine (same dir) keeps the TPM state.
func TestUEFITPM(t *testing.T) {
	vmTest(t)
	dir := t.TempDir()
	v := start(t, t.Context(), dir, WithTPM(),
		WithKernel(kernel(t), "", "console=ttyS0 panic=-1"))
	waitFor(t, v, 0, `Linux version`)
	waitFor(t, v, 0, `efi: .*TPMEventLog=`)
	waitFor(t, v, 0, `tpm_tis \S+: 2\.0 TPM`)
	waitFor(t, v, 0, `Kernel panic`)
	// The panic reboots the machine inside the same QEMU: swtpm stays.
	m := v.Mark()
	waitFor(t, v, m, `efi: .*TPMEventLog=`)
	waitFor(t, v, m, `tpm_tis \S+: 2\.0 TPM`)
	if err := v.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	qemuPID, tpmPID := v.pids()
	if !gone(qemuPID) || !gone(tpmPID) {
		t.Errorf("after Close: qemu %d gone %v, swtpm %d gone %v; want both gone", qemuPID, gone(qemuPID), tpmPID, gone(tpmPID))
	}

	var logs bytes.Buffer
	v2 := start(t, t.Context(), dir, WithTPM(), WithNoReboot(),
		WithKernel(kernel(t), "", "console=ttyS0 panic=-1"),
		WithLogger(slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))))
	waitFor(t, v2, 0, `tpm_tis \S+: 2\.0 TPM`)
	v2.Close()
	if strings.Contains(logs.String(), "tpm manufactured") {
		t.Errorf("second power-on manufactured a new TPM, want the kept state:\n%s", logs.String())
	}
	if got := tpmState(t, dir); got.Size() == 0 {
		t.Errorf("tpm state after second power-on is empty")
	}
	if n := strings.Count(logFile(t, filepath.Join(dir, "console.log")), "tpm_tis"); n != 3 {
		t.Errorf("console.log shows the TPM %d times, want 3 (two boots, then a power-on)", n)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func tpmState(t *testing.T, dir string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "tpm", "tpm2-00.permall"))
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func logFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKill cuts the power of a UEFI VM with a TPM while it boots: QEMU
// and swtpm are gone when Kill returns. Then the same machine powers on
// again, and ending Start's context kills it too.
func TestKill(t *testing.T) {
	vmTest(t)
	dir := t.TempDir()
	v := start(t, t.Context(), dir, WithTPM(), WithKernel(kernel(t), "", "console=ttyS0 panic=-1"))
	waitFor(t, v, 0, `Linux version`)
	qemuPID, tpmPID := v.pids()
	if gone(qemuPID) || gone(tpmPID) {
		t.Fatalf("before Kill: qemu %d or swtpm %d already gone", qemuPID, tpmPID)
	}
	if err := v.Kill(); err != nil {
		t.Fatalf("Kill() = %v", err)
	}
	if !gone(qemuPID) || !gone(tpmPID) {
		t.Errorf("after Kill: qemu %d gone %v, swtpm %d gone %v; want both gone", qemuPID, gone(qemuPID), tpmPID, gone(tpmPID))
	}
	var exit *exec.ExitError
	if err := v.Wait(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Wait() after Kill = %v, want killed by SIGKILL", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	v2 := start(t, ctx, dir, WithTPM(), WithKernel(kernel(t), "", "console=ttyS0 panic=-1"))
	waitFor(t, v2, 0, `tpm_tis \S+: 2\.0 TPM`)
	qemuPID, tpmPID = v2.pids()
	cancel()
	done := make(chan error)
	go func() { done <- v2.Wait() }()
	select {
	case err := <-done:
		if !errors.As(err, &exit) {
			t.Errorf("Wait() after the context ended = %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("VM still running 10 s after its context ended")
	}
	if !gone(qemuPID) || !gone(tpmPID) {
		t.Errorf("after the context ended: qemu %d gone %v, swtpm %d gone %v; want both gone", qemuPID, gone(qemuPID), tpmPID, gone(tpmPID))
	}
}

// TestGuestForward boots a busybox initramfs that fetches a page from
// an httptest server on the host's 127.0.0.1 through 10.0.2.100, twice
// (the cmd: form serves every connection), fails to reach anything else,
// and leaves a connection hanging: Close ends its nc helper too.
func TestGuestForward(t *testing.T) {
	vmTest(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host, %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var hostPort int
	fmt.Sscan(port, &hostPort)

	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	buildInitramfs(t, initrd, true, `
for i in 1 2; do
	echo "fetch $i: $(timeout 20 wget -q -O- http://10.0.2.100:80/hello$i)"
done
echo "escape: $(timeout 5 wget -q -O- http://10.0.2.2:`+port+`/ 2>&1 || echo refused)"
wget -q -O- http://10.0.2.100:81/ &
echo "hanging connection open"
sleep 1000
`)
	// A host port that accepts and never answers: its nc helper must
	// still end with QEMU.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	v := start(t, t.Context(), t.TempDir(), WithoutUEFI(), WithGuestForward(80, hostPort),
		WithGuestForward(81, hang.Addr().(*net.TCPAddr).Port),
		WithKernel(kernel(t), initrd, "console=ttyS0 panic=-1 quiet"))
	for i := 1; i <= 2; i++ {
		got := waitFor(t, v, 0, fmt.Sprintf(`^fetch %d: (.*)$`, i))
		if want := fmt.Sprintf("hello from the host, /hello%d", i); got[1] != want {
			t.Errorf("guest fetch %d got %q, want %q", i, got[1], want)
		}
	}
	if got := waitFor(t, v, 0, `^escape: (.*)$`); strings.Contains(got[1], "hello") {
		t.Errorf("guest reached the host outside the forward: %q", got[1])
	}
	waitFor(t, v, 0, `^hanging connection open`)
	nc := filepath.Join(v.Dir(), "nc")
	deadline := time.Now().Add(10 * time.Second)
	for len(helpers(t, nc)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no forward helper %s running for the hanging connection", nc)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := v.Wait(); err != nil {
		t.Errorf("Wait() after Close = %v, want nil (QEMU exits 0 on SIGTERM)", err)
	}
	if left := helpers(t, nc); len(left) > 0 {
		t.Errorf("forward helpers left after Close: %v", left)
	}
}

// helpers lists the PIDs of processes whose argv[0] is nc, from /proc.
func helpers(t *testing.T, nc string) []int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err != nil {
			continue // gone meanwhile
		}
		if argv0, _, _ := bytes.Cut(b, []byte{0}); string(argv0) == nc {
			var pid int
			fmt.Sscan(filepath.Base(filepath.Dir(c)), &pid)
			pids = append(pids, pid)
		}
	}
	return pids
}

// virtioNet are the modules virtio_net needs, in load order (from
// their depends= fields; the package carries no modules.dep).
var virtioNet = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio",
	"drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci_legacy_dev",
	"drivers/virtio/virtio_pci", "net/core/failover", "drivers/net/net_failover",
	"drivers/net/virtio_net",
}

// buildInitramfs writes a newc initramfs with busybox, the virtio_net
// modules and an /init that runs script, after bringing up eth0 as
// 10.0.2.15 if network.
func buildInitramfs(t *testing.T, path string, network bool, script string) {
	t.Helper()
	files := guestFiles(t)
	mods, _ := filepath.Glob(filepath.Join(files, "lib/modules/*/kernel"))
	if len(mods) != 1 {
		t.Fatalf("want one lib/modules/*/kernel in the kernel package, got %q", mods)
	}
	init := `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
`
	if network {
		for _, m := range virtioNet {
			init += "insmod /lib/modules/" + filepath.Base(m) + ".ko\n"
		}
		init += `i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
`
	}
	init += script

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := cpio.Newc.Writer(f)
	rec := cpio.NewRecorder()
	records := []cpio.Record{
		cpio.Directory("bin", 0o755), cpio.Directory("dev", 0o755), cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755), cpio.Directory("lib/modules", 0o755),
		cpio.StaticFile("init", init, 0o755),
	}
	host := map[string]string{"bin/busybox": filepath.Join(files, "bin/busybox")}
	for _, m := range virtioNet {
		host["lib/modules/"+filepath.Base(m)+".ko"] = filepath.Join(mods[0], m+".ko")
	}
	for name, src := range host {
		r, err := rec.GetRecord(src)
		if err != nil {
			t.Fatal(err)
		}
		r.Name = name
		records = append(records, r)
	}
	if err := cpio.WriteRecordsAndDirs(w, records); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInput types a line into the guest's serial console once
// the guest asks for it.
func TestConsoleInput(t *testing.T) {
	vmTest(t)
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	buildInitramfs(t, initrd, false, `
echo "ready for input"
read line < /dev/console
echo "guest read: $line"
poweroff -f
`)
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	v := start(t, t.Context(), t.TempDir(), WithoutUEFI(), WithConsoleInput(r),
		WithKernel(kernel(t), initrd, "console=ttyS0 panic=-1 quiet"))
	waitFor(t, v, 0, `^ready for input`)
	if _, err := io.WriteString(w, "plumb 42\r"); err != nil {
		t.Fatal(err)
	}
	if got := waitFor(t, v, 0, `^guest read: (.*)$`); got[1] != "plumb 42" {
		t.Errorf("guest read %q, want %q", got[1], "plumb 42")
	}
	if err := v.Wait(); err != nil {
		t.Errorf("Wait() after guest poweroff = %v, want nil", err)
	}
}

// TestKeptVarsWithNIC boots systemd-boot from a disk through OVMF, which
// records a boot entry in the machine's vars file; then the same machine
// powers on with a NIC added and still boots from its disk (pinned PCI
// slots).
func TestKeptVarsWithNIC(t *testing.T) {
	vmTest(t)
	disk := espDisk(t, kernel(t), "console=ttyS0 panic=-1")
	dir := t.TempDir()
	v := start(t, t.Context(), dir, WithDisk(disk), WithNoReboot())
	waitFor(t, v, 0, `Linux version`)
	waitFor(t, v, 0, `Kernel panic`)
	if err := v.Wait(); err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	pristine, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	if kept := logFile(t, filepath.Join(dir, "OVMF_VARS.fd")); kept == string(pristine) {
		t.Fatal("OVMF wrote nothing to the machine's vars file: the test proves nothing")
	}

	v2 := start(t, t.Context(), dir, WithDisk(disk), WithNoReboot(), WithGuestForward(80, 8080))
	waitFor(t, v2, 0, `Linux version`)
	waitFor(t, v2, 0, `Kernel panic`)
}

// espDisk writes a GPT disk whose one partition is an ESP with
// systemd-boot and one loader entry for kernel.
func espDisk(t *testing.T, kernel, options string) string {
	t.Helper()
	for tool, pkg := range map[string]string{"sgdisk": "gdisk", "mkfs.vfat": "dosfstools", "mcopy": "mtools", "mmd": "mtools"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, pkg)
		}
	}
	const sdboot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	if _, err := os.Stat(sdboot); err != nil {
		t.Fatalf("%s not found: apt-get install systemd-boot-efi", sdboot)
	}
	tmp := t.TempDir()
	disk, esp := filepath.Join(tmp, "disk.img"), filepath.Join(tmp, "esp.img")
	const start, size = 1 << 20, 40 << 20
	conf := filepath.Join(tmp, "a.conf")
	if err := os.WriteFile(conf, []byte("title a\nlinux /vmlinuz\noptions "+options+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loader := filepath.Join(tmp, "loader.conf")
	if err := os.WriteFile(loader, []byte("timeout 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("truncate", "-s", strconv.Itoa(start+size+start), disk)
	run("sgdisk", "-n", fmt.Sprintf("1:%d:+%d", start/512, size/512-1), "-t", "1:ef00", disk)
	run("truncate", "-s", strconv.Itoa(size), esp)
	run("mkfs.vfat", esp)
	run("mmd", "-i", esp, "::EFI", "::EFI/BOOT", "::loader", "::loader/entries")
	run("mcopy", "-i", esp, sdboot, "::EFI/BOOT/BOOTX64.EFI")
	run("mcopy", "-i", esp, loader, "::loader/loader.conf")
	run("mcopy", "-i", esp, conf, "::loader/entries/a.conf")
	run("mcopy", "-i", esp, kernel, "::vmlinuz")
	run("dd", "if="+esp, "of="+disk, "bs=1M", fmt.Sprintf("seek=%d", start>>20), "conv=notrunc", "status=none")
	return disk
}

// TestQEMUFails checks that WaitFor reports QEMU's own error when QEMU
// exits at once (here: a kernel file that is no kernel).
func TestQEMUFails(t *testing.T) {
	vmTest(t)
	bad := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("not a kernel"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	v := start(t, t.Context(), t.TempDir(), WithoutUEFI(), WithKernel(bad, "", ""))
	_, err := v.WaitFor(t.Context(), regexp.MustCompile(`Linux version`))
	if err == nil || !strings.Contains(err.Error(), "qemu exit status 1") || !strings.Contains(err.Error(), "(qemu.log: qemu") {
		t.Errorf("WaitFor = %v, want qemu's exit status and its message", err)
	}
	t.Log(err)
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/testvm"
)

// installerRoot unpacks a build's installer initramfs into a directory
// (with cpio) and points its agent at the fleet's server on 127.0.0.1, so
// that the real plumbd can run `install --root DIR` on the host.
// tamperTarget flips bytes in the middle of the one published target of
// version whose file name matches pattern (a glob).
func (f *fleet) tamperTarget(t *testing.T, version, pattern string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(f.work, "repo", "repository", "targets", f.hardware, version, pattern))
	if len(matches) != 1 {
		t.Fatalf("published targets %s of %s: %v, want one", pattern, version, matches)
	}
	tf, err := os.OpenFile(matches[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	fi, err := tf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tf.WriteAt([]byte("TAMPERED"), fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) installerRoot(t *testing.T, build string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "zstd -dc "+filepath.Join(build, builder.InstallerInitrdFile)+" | cpio -idm --quiet")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpacking the installer initramfs: %v\n%s", err, out)
	}
	p := filepath.Join(dir, config.Path)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	c["repository"] = fmt.Sprintf("https://127.0.0.1:%d/", f.port)
	data, _ = json.Marshal(c)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// plumbdInstall runs the real plumbd install on the host and returns its
// exit code and output.
func plumbdInstall(t *testing.T, root string, args ...string) (int, string) {
	t.Helper()
	plumbd, _ := testutil.Binaries(t)
	cmd := exec.Command(plumbd, append([]string{"install", "--root", root, "--no-reboot"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

func blankDisk(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// allZero reports whether the file holds only zero bytes.
func allZero(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 0 }) >= 0 {
			return false
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestInstallHost runs the real `plumbd install` on the host against disk
// image files (no VM is needed for these claims; the VM test below boots
// the installer for real): an install onto a blank disk gives the build's
// layout and passes the real filesystem tools; a disk that holds partitions
// is refused and left byte-identical unless --force; a tampered release
// stops the installer before the partition table, the disk all zeros.
func TestInstallHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-install-host")
	v1 := f.build("1.0.0", "", "")
	f.publish(v1)
	man, err := builder.ReadManifest(filepath.Join(v1, builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	root := f.installerRoot(t, v1)
	diskSize := int64(1 << 30) // larger than the layout: the backup GPT moves to its end

	t.Run("usb image", func(t *testing.T) {
		img := filepath.Join(v1, builder.InstallerDiskFile)
		run(t, "sgdisk", "-v", img)
		info := run(t, "sgdisk", "-i", "1", img)
		if !strings.Contains(info, "EFI system partition") || !strings.Contains(info, "Partition name: 'ESP'") {
			t.Errorf("installer.img partition 1:\n%s\nwant the ESP", info)
		}
		esp := extractPartition(t, img, builder.Partition{Name: "usb-esp", Start: 1 << 20, Size: fileSize(t, img) - 2<<20})
		run(t, "fsck.vfat", "-n", esp)
		entry := run(t, "mtype", "-i", esp, "::/loader/entries/plumb-installer.conf")
		if !strings.Contains(entry, "linux /installer/vmlinuz\ninitrd /installer/initrd\noptions plumb.disk=auto ") {
			t.Errorf("installer entry:\n%s", entry)
		}
		for src, want := range map[string]string{"::/installer/vmlinuz": builder.KernelFile, "::/installer/initrd": builder.InstallerInitrdFile, "::/EFI/BOOT/BOOTX64.EFI": ""} {
			out := filepath.Join(t.TempDir(), "f")
			run(t, "mcopy", "-i", esp, src, out)
			if want != "" && sha256File(t, out) != sha256File(t, filepath.Join(v1, want)) {
				t.Errorf("%s on the USB image differs from the build's %s", src, want)
			}
		}
	})

	t.Run("blank disk", func(t *testing.T) {
		disk := filepath.Join(t.TempDir(), "disk.img")
		blankDisk(t, disk, diskSize)
		start := time.Now()
		code, out := plumbdInstall(t, root, "--disk", disk)
		t.Logf("install took %.1fs:\n%s", time.Since(start).Seconds(), out)
		if code != 0 {
			t.Fatalf("plumbd install = exit %d", code)
		}
		run(t, "sgdisk", "-v", disk)
		gpt := run(t, "sgdisk", "-p", disk)
		for _, p := range man.Partitions {
			info := run(t, "sgdisk", "-i", fmt.Sprint(p.Index), disk)
			if !strings.Contains(strings.ToLower(info), "unique guid: "+p.PartUUID) || !strings.Contains(info, fmt.Sprintf("First sector: %d ", p.Start/512)) {
				t.Errorf("partition %d on the installed disk:\n%s\nwant PARTUUID %s at sector %d as in disk.img", p.Index, info, p.PartUUID, p.Start/512)
			}
		}
		t.Logf("partition table:\n%s", gpt)
		esp := extractPartition(t, disk, partition(t, man, disklayout.NameESP))
		run(t, "fsck.vfat", "-n", esp)
		entries := run(t, "mdir", "-b", "-i", esp, "::/loader/entries")
		if !strings.Contains(entries, "plumb-1.0.0+3.conf") {
			t.Errorf("ESP entries = %q, want the trial entry plumb-1.0.0+3.conf", entries)
		}
		for _, p := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/loader/loader.conf", "::/plumb/a/vmlinuz", "::/plumb/a/initrd.img"} {
			run(t, "mdir", "-i", esp, p)
		}
		data := extractPartition(t, disk, partition(t, man, disklayout.NameData))
		run(t, "fsck.ext4", "-fn", data)
		rootA := partition(t, man, disklayout.NameRootA)
		if got, want := sha256Prefix(t, extractPartition(t, disk, rootA), fileSize(t, filepath.Join(v1, builder.RootfsFile))), sha256File(t, filepath.Join(v1, builder.RootfsFile)); got != want {
			t.Errorf("slot A holds sha256 %s, want the release's %s", got, want)
		}
		// The data partition is the build's, byte for byte.
		if got, want := sha256File(t, data), sha256File(t, extractPartition(t, filepath.Join(v1, builder.DiskFile), partition(t, man, disklayout.NameData))); got != want {
			t.Errorf("data partition sha256 %s, disk.img's %s", got, want)
		}

		// The installed disk holds partitions now: refused, untouched.
		before := sha256File(t, disk)
		code, out = plumbdInstall(t, root, "--disk", disk)
		t.Logf("second install: exit %d: %s", code, out)
		if code != 2 || !regexp.MustCompile(`(?m)^plumbd: disk \S+ holds a GPT partition table: refusing to overwrite it without --force; nothing was written`).MatchString(out) {
			t.Errorf("install on a partitioned disk = exit %d, %q; want exit 2 and the refusal", code, out)
		}
		if after := sha256File(t, disk); after != before {
			t.Errorf("refused disk changed: sha256 %s before, %s after", before, after)
		}
		// --force --dry-run: verifies, writes nothing.
		code, out = plumbdInstall(t, root, "--disk", disk, "--force", "--dry-run")
		if code != 0 || !strings.Contains(out, "dry run:") {
			t.Errorf("--force --dry-run = exit %d, %q", code, out)
		}
		if after := sha256File(t, disk); after != before {
			t.Errorf("dry run changed the disk")
		}
	})

	t.Run("tampered release", func(t *testing.T) {
		f.tamperTarget(t, "1.0.0", "*.rootfs.sqfs")
		disk := filepath.Join(t.TempDir(), "disk.img")
		blankDisk(t, disk, diskSize)
		code, out := plumbdInstall(t, root, "--disk", disk)
		t.Logf("exit %d:\n%s", code, out)
		if code != 3 || !strings.Contains(out, "sha256 mismatch") || !strings.Contains(out, "the partition table was not written") {
			t.Errorf("install of a tampered release = exit %d; want exit 3 naming the sha256 mismatch, before the partition table", code)
		}
		if !allZero(t, disk) {
			t.Error("the disk is not all zeros after the refused release")
		}
	})
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestInstallUSB boots the installer as a USB stick would: the build's
// installer.img (grown to 1 GiB, as dd onto a larger stick leaves it) is
// the VM's first disk under OVMF with swtpm, and OVMF boots its ESP
// (systemd-boot → the installer entry with the image's own command line,
// plumb.disk=auto). Two more disks are attached: one holding a GPT
// partition table (written by sgdisk) and a blank one. The release in the
// repository is tampered with before power-on.
//
// One boot checks both refusals: `auto` passes over the stick and the
// partitioned disk and takes the blank one; the tampered release stops
// the install before the partition table (exit 3, the reason on the
// console) and the blank disk stays all zeros. The installer then drops to
// a shell, where the test types `plumbd install --disk /dev/vdb` (the
// partitioned disk, as a technician would by hand): refused with its
// one-line message, exit 2; then `plumbd install --disk /dev/vda --force`
// (the stick itself): refused too, exit 2, since systemd-boot named the
// stick's ESP as the boot partition. Every disk file's sha256 is unchanged
// at the end, the stick's included.
func TestInstallUSB(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-install-usb")
	v1 := f.build("1.0.0", "", "")
	f.publish(v1)

	dir := filepath.Join(f.work, "vm-usb")
	os.MkdirAll(dir, 0o755)
	stick := filepath.Join(dir, "stick.img")
	if err := testvm.CopyImage(stick, filepath.Join(v1, builder.InstallerDiskFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(stick, 1<<30); err != nil {
		t.Fatal(err)
	}
	parted := filepath.Join(dir, "parted.img")
	blankDisk(t, parted, 1<<30)
	run(t, "sgdisk", "-n", "1:2048:+64M", "-t", "1:8300", "-c", "1:old-data", parted)
	blank := filepath.Join(dir, "blank.img")
	blankDisk(t, blank, 1<<30)
	before := map[string]string{}
	for _, p := range []string{stick, parted} {
		before[p] = sha256File(t, p)
	}

	f.tamperTarget(t, "1.0.0", "*.rootfs.sqfs")

	keys, typing := io.Pipe()
	t.Cleanup(func() { typing.Close() })
	vm, err := testvm.Start(ctx, dir, testvm.WithDisk(stick), testvm.WithDisk(parted), testvm.WithDisk(blank),
		testvm.WithTPM(), testvm.WithGuestForward(443, f.port), testvm.WithConsoleInput(keys))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	powerOn := vm.Started()
	// Only the stick has a bootloader: OVMF booted its systemd-boot,
	// which started the installer entry.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`plumb-installer: plumbd install --disk auto`)); err != nil {
		t.Fatal(err)
	}
	got, err := vm.WaitFor(ctx, regexp.MustCompile(`plumb-installer: plumbd install failed \(exit (\d+)\)`))
	if err != nil {
		t.Fatal(err)
	}
	tampered := time.Since(powerOn)
	con := vm.Console()
	if got[1] != "3" || !strings.Contains(con, "installing 1.0.0 on /dev/vdc") ||
		!regexp.MustCompile(`(?m)^plumb-install: \[.*\] release 1\.0\.0 failed: .*sha256 mismatch.*; the partition table was not written`).MatchString(con) {
		t.Errorf("installer on the tampered release: exit %s; want exit 3, the blank /dev/vdc chosen, and one line naming the sha256 mismatch before the partition table", got[1])
	}
	for _, line := range strings.Split(con, "\n") {
		if strings.HasPrefix(line, "plumb") {
			t.Log(strings.TrimSpace(line))
		}
	}

	// By hand at the installer's shell: the partitioned disk.
	m := vm.Mark()
	if _, err := io.WriteString(typing, "plumbd install --disk /dev/vdb; echo plumb-test-rc=$?\n"); err != nil {
		t.Fatal(err)
	}
	got, err = vm.WaitForAfter(ctx, m, regexp.MustCompile(`plumb-test-rc=(\d+)`))
	if err != nil {
		t.Fatal(err)
	}
	refused := time.Since(powerOn)
	tail := vm.Console()
	refusal := regexp.MustCompile(`(?m)^plumbd: disk /dev/vdb holds a GPT partition table: refusing to overwrite it without --force; nothing was written\r?$`)
	if got[1] != "2" || !refusal.MatchString(tail) {
		t.Errorf("plumbd install --disk /dev/vdb = exit %s, console:\n%s\nwant exit 2 and the one-line refusal", got[1], tail)
	}
	t.Logf("refusal: %s", refusal.FindString(tail))

	// Even forced, the stick the installer booted from is not written:
	// systemd-boot named its ESP in LoaderDevicePartUUID.
	m = vm.Mark()
	if _, err := io.WriteString(typing, "plumbd install --disk /dev/vda --force; echo plumb-test-rc=$?\n"); err != nil {
		t.Fatal(err)
	}
	if got, err = vm.WaitForAfter(ctx, m, regexp.MustCompile(`plumb-test-rc=(\d+)`)); err != nil {
		t.Fatal(err)
	}
	stickESP := regexp.MustCompile(`(?i)Partition unique GUID: (\S+)`).FindStringSubmatch(run(t, "sgdisk", "-i", "1", stick))
	if stickESP == nil {
		t.Fatal("no unique GUID for the stick's ESP")
	}
	esp := strings.ToLower(stickESP[1])
	bootRefusal := regexp.MustCompile(`(?m)^plumbd: disk /dev/vda holds the partition the installer booted from \(PARTUUID ` + esp + `\): refusing to overwrite it, even with --force; nothing was written\r?$`)
	if con := vm.Console(); got[1] != "2" || !bootRefusal.MatchString(con) || !strings.Contains(con, "plumb-install: booted from partition "+esp) {
		t.Errorf("plumbd install --disk /dev/vda --force = exit %s, console:\n%s\nwant exit 2 and the refusal naming the stick's ESP %s", got[1], con, esp)
	}
	t.Logf("refusal: %s", bootRefusal.FindString(vm.Console()))
	vm.Close()
	t.Logf("power-on to the tampered release's stop: %.1fs; to the first refusal typed at the shell: %.1fs", tampered.Seconds(), refused.Seconds())

	for p, sum := range before {
		if after := sha256File(t, p); after != sum {
			t.Errorf("%s changed: sha256 %s before, %s after", filepath.Base(p), sum, after)
		}
	}
	if !allZero(t, blank) {
		t.Error("the blank disk is not all zeros after the tampered release")
	}
}

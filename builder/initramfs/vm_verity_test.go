package initramfs

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/verity"
)

// verityFixture is a VM fixture whose slot b holds the test root with its
// dm-verity tree, and an initramfs that can map it (dm_verity loaded).
func verityFixture(t *testing.T) (vmFixture, *verity.Params, verity.Section) {
	t.Helper()
	vmlinuz, initrd := vmKernel(t, append(append([]string{}, vmModules...), "dm_verity"))
	sqfs := testRootSquashfs(t)
	disk := testDisk(t, sqfs)
	fi, err := os.Stat(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, err := gpt.Read(d, 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	var sec verity.Section
	for _, p := range table.Partitions {
		if p != nil && p.Name == "plumb-root-b" {
			sec = verity.Section{RW: d, Start: int64(p.Start) * 512, Size: int64(p.Size)}
		}
	}
	salt := make([]byte, verity.SaltSize)
	copy(salt, "salt of the verity boot test")
	p, err := verity.Format(sec, fi.Size(), salt)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return vmFixture{vmlinuz: vmlinuz, initrd: initrd, disk: disk}, p, sec
}

// TestBootVMVerity boots slot b through dm-verity: the root's init runs on
// /dev/mapper/plumb-root and boot.json names the root hash.
func TestBootVMVerity(t *testing.T) {
	t.Parallel()
	fx, p, _ := verityFixture(t)
	res := bootVM(t, fx.vmlinuz, fx.initrd, fx.disk,
		"root=PARTUUID="+vmUUIDB+" ro console=ttyS0 panic=-1 plumb.slot=b "+p.Cmdline(), "PLUMB-TEST-ROOT", 180*time.Second)
	if res.line == "" {
		t.Fatalf("no PLUMB-TEST-ROOT line; QEMU exited=%v; output:\n%s", res.exited, res.output)
	}
	t.Logf("root init ran %.1f s after QEMU started", res.elapsed.Seconds())
	_, js, _ := strings.Cut(res.line, "slot=")
	var bi bootrecord.BootInfo
	if err := json.Unmarshal([]byte(js), &bi); err != nil {
		t.Fatalf("boot.json %q: %v", js, err)
	}
	if want := "/dev/mapper/plumb-root"; bi.VerityDevice != want || bi.VerityRootHash != verity.HexRoot(p) || bi.RootDevice != "/dev/vda3" {
		t.Errorf("boot.json verity device %q root hash %q root %q, want %q, %q, /dev/vda3", bi.VerityDevice, bi.VerityRootHash, bi.RootDevice, want, verity.HexRoot(p))
	}
	for _, want := range []string{`msg="root mapped through dm-verity"`, `msg="mounted root" device=/dev/mapper/plumb-root`} {
		if !strings.Contains(res.output, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// TestBootVMVerityCorrupt flips one byte of the squashfs superblock's block
// in slot b: dm-verity refuses the block, the mount fails with an I/O
// error, and plumb-init gives up and reboots (so that boot counting falls
// back to the other slot).
func TestBootVMVerityCorrupt(t *testing.T) {
	t.Parallel()
	fx, p, sec := verityFixture(t)
	d, err := os.OpenFile(fx.disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sec.RW = d
	var b [1]byte
	if _, err := sec.ReadAt(b[:], 200); err != nil {
		t.Fatal(err)
	}
	if _, err := sec.WriteAt([]byte{b[0] ^ 1}, 200); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	res := bootVM(t, fx.vmlinuz, fx.initrd, fx.disk,
		"root=PARTUUID="+vmUUIDB+" ro console=ttyS0 panic=-1 plumb.slot=b "+p.Cmdline(), `msg="FATAL: boot failed"`, 180*time.Second)
	if res.line == "" {
		t.Fatalf("no FATAL line; QEMU exited=%v; output:\n%s", res.exited, res.output)
	}
	t.Logf("refused %.1f s after QEMU started: %s", res.elapsed.Seconds(), res.line)
	for _, want := range []string{"input/output error", "dm-verity: a block of slot b does not match root hash " + verity.HexRoot(p)} {
		if !strings.Contains(res.line, want) {
			t.Errorf("FATAL line lacks %q", want)
		}
	}
	if !strings.Contains(res.output, "is corrupted") {
		var lines []string
		for _, l := range strings.Split(res.output, "\n") {
			if strings.Contains(l, "verity") {
				lines = append(lines, l)
			}
		}
		t.Errorf("console lacks the kernel's \"verity: data block N is corrupted\"; its verity lines:\n%s", strings.Join(lines, "\n"))
	}
	if strings.Contains(res.output, "PLUMB-TEST-ROOT") {
		t.Errorf("the corrupted root's init ran")
	}
	if !res.exited {
		t.Errorf("QEMU still running: plumb-init did not reboot")
	}
}

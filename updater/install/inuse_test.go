package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/fetch"
)

// errReached is what unreachedRepo returns: the installer got past the
// disk checks to the network.
var errReached = errors.New("the installer reached the repository")

// unreachedRepo stands for the TUF repository in tests whose point is the
// disk checks, which come before any network: Refresh only says it was
// reached.
type unreachedRepo struct{}

func (unreachedRepo) Refresh(context.Context) error    { return errReached }
func (unreachedRepo) Targets() ([]fetch.Target, error) { return nil, errReached }
func (unreachedRepo) Download(context.Context, string, io.Writer, io.Writer) (int64, error) {
	return 0, errReached
}

func testLayout() *config.Installer {
	return &config.Installer{ESPSize: disklayout.MinESPSize, RootSize: disklayout.MinRootSize, DataSize: disklayout.MinDataSize, Seed: "inuse-test"}
}

// needRoot fails the test unless it runs as root (loop devices, mounts).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if testing.Short() {
			t.Skip("loop devices and mounts need root: not in -short")
		}
		t.Fatal("this test attaches loop devices and mounts them: run it as root (make test does)")
	}
	for _, tool := range []struct{ name, pkg string }{{"losetup", "mount"}, {"mount", "mount"}, {"umount", "mount"}, {"mkfs.ext4", "e2fsprogs"}} {
		testutil.RequireTool(t, tool.name, tool.pkg)
	}
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches file (from offset, when not 0) to a free loop device,
// detached at cleanup.
func loopDevice(t *testing.T, file string, offset int64) string {
	t.Helper()
	args := []string{"-f", "--show"}
	if offset > 0 {
		args = append(args, "-o", fmt.Sprint(offset))
	}
	dev := runCmd(t, "losetup", append(args, file)...)
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// mountExt4 makes an ext4 filesystem on dev and mounts it, unmounted at
// cleanup (before the loop devices are detached).
func mountExt4(t *testing.T, dev string) string {
	t.Helper()
	runCmd(t, "mkfs.ext4", "-q", "-F", dev)
	mnt := t.TempDir()
	runCmd(t, "mount", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func headSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4<<20)
	n, _ := io.ReadFull(f, b)
	return sha256.Sum256(b[:n])
}

// runForced is plumbd install --disk dev --force with the real system's
// /sys and /proc.
func runForced(t *testing.T, dev string, dryRun bool) error {
	var console bytes.Buffer
	_, err := Run(t.Context(), Options{Disk: dev, Force: true, DryRun: dryRun, Layout: testLayout(), Root: t.TempDir(), Repo: unreachedRepo{}, Console: &console})
	return err
}

// TestForceCannotSelectDiskInUse: --force never selects a disk in use: the
// disk the running system's root lives on, a loop "disk" with a mounted
// filesystem, one with a mounted "partition" (a second loop device at an
// offset into it: this kernel makes no partition nodes for loop devices),
// and one another program holds open exclusively. A free disk passes the
// checks (the installer goes on to the repository).
func TestForceCannotSelectDiskInUse(t *testing.T) {
	needRoot(t)
	size := int64(2) * (disklayout.MinESPSize + 2*disklayout.MinRootSize + disklayout.MinDataSize)
	newDisk := func() (img, dev string) {
		img = filepath.Join(t.TempDir(), "disk.img") // sparse
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
		return img, loopDevice(t, img, 0)
	}

	t.Run("running system", func(t *testing.T) {
		// The whole disk holding /: found from /'s device number, as an
		// installer booted from it (with -kernel, no LoaderDevicePartUUID)
		// would be told --disk by a person.
		// Refused before the installer opens it at all (this test may not
		// even be allowed to open it: a container's device cgroup).
		disk := runningDisk(t)
		err := runForced(t, disk, true)
		if err == nil || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), " is mounted on /") || !strings.Contains(err.Error(), "even with --force") {
			t.Fatalf("install --force --disk %s = %v; want it refused as in use (mounted on /)", disk, err)
		}
	})

	t.Run("mounted filesystem", func(t *testing.T) {
		_, dev := newDisk()
		mnt := mountExt4(t, dev)
		before := headSum(t, dev)
		err := runForced(t, dev, false)
		want := fmt.Sprintf("disk %s is in use (%s is mounted on %s): refusing to overwrite it, even with --force; nothing was written", dev, filepath.Base(dev), mnt)
		if err == nil || err.Error() != want || !IsRefusal(err) {
			t.Fatalf("install = %v, want %q", err, want)
		}
		if headSum(t, dev) != before {
			t.Fatalf("%s changed", dev)
		}
	})

	t.Run("mounted partition", func(t *testing.T) {
		_, dev := newDisk()
		part := loopDevice(t, dev, 1<<20)
		mnt := mountExt4(t, part)
		before := headSum(t, dev)
		err := runForced(t, dev, false)
		want := fmt.Sprintf("disk %s is in use (%s is mounted on %s): refusing to overwrite it, even with --force; nothing was written", dev, filepath.Base(part), mnt)
		if err == nil || err.Error() != want {
			t.Fatalf("install = %v, want %q", err, want)
		}
		if headSum(t, dev) != before {
			t.Fatalf("%s changed", dev)
		}
	})

	t.Run("held exclusively", func(t *testing.T) {
		_, dev := newDisk()
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0) // another installer
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		err = runForced(t, dev, false)
		if err == nil || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "refuses to open it exclusively") {
			t.Fatalf("install = %v, want the O_EXCL refusal", err)
		}
	})

	t.Run("free disk", func(t *testing.T) {
		_, dev := newDisk()
		if err := runForced(t, dev, false); !errors.Is(err, errReached) {
			t.Fatalf("install on a free disk = %v, want it to reach the repository", err)
		}
	})
}

// runningDisk is the whole disk holding the running system's /.
func runningDisk(t *testing.T) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatalf("/ is not on a block device (%d:%d): %v", unix.Major(st.Dev), unix.Minor(st.Dev), err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	dev := filepath.Join("/dev", filepath.Base(sys))
	if _, err := os.Stat(dev); err != nil {
		t.Fatalf("the disk of / (%s) has no node in /dev: %v", filepath.Base(sys), err)
	}
	return dev
}

// TestInUseMapping checks the partition and holder walk on a sysfs tree
// this test writes (this kernel makes neither loop partitions nor
// device-mapper devices: see TestForceCannotSelectDiskInUse for the real
// mounts). The disk is a real loop device, so its device number is real;
// its partition p2 carries a dm device (dm-0, the verity root) and p4 is
// /data, as on a device booted from this disk with -kernel.
func TestInUseMapping(t *testing.T) {
	needRoot(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := loopDevice(t, img, 0)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Base(dev)
	sys := t.TempDir()
	devices := filepath.Join(sys, "devices")
	block := filepath.Join(sys, "class", "block")
	mk := func(rel, num string, partition bool) {
		dir := filepath.Join(devices, rel)
		os.MkdirAll(filepath.Join(dir, "holders"), 0o755)
		os.WriteFile(filepath.Join(dir, "dev"), []byte(num+"\n"), 0o644)
		if partition {
			os.WriteFile(filepath.Join(dir, "partition"), []byte("1\n"), 0o644)
		}
		os.MkdirAll(block, 0o755)
		if err := os.Symlink(dir, filepath.Join(block, filepath.Base(rel))); err != nil {
			t.Fatal(err)
		}
	}
	mk(disk, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), false)
	for i := 1; i <= 4; i++ {
		mk(filepath.Join(disk, fmt.Sprintf("%sp%d", disk, i)), fmt.Sprintf("259:%d", 40+i), true)
	}
	mk("dm-0", "254:9", false)
	os.WriteFile(filepath.Join(devices, disk, disk+"p2", "holders", "dm-0"), nil, 0o644)
	mk("other", "8:16", false)

	mountinfo := filepath.Join(sys, "mountinfo")
	swaps := filepath.Join(sys, "swaps")
	os.WriteFile(swaps, []byte("Filename\tType\tSize\tUsed\tPriority\n"), 0o644)
	s := System{SysBlock: block, Mountinfo: mountinfo, Swaps: swaps}
	for _, tt := range []struct{ name, mounts, want string }{
		{"nothing mounted from it", "22 1 8:16 / /mnt/other rw - ext4 /dev/other rw\n", ""},
		{"root on a dm device over a partition", "21 1 254:9 / / ro - squashfs /dev/dm-0 ro\n", "dm-0 is mounted on /"},
		{"data partition, with a space in the mount point", "30 21 259:44 / /data\\040x rw - ext4 /dev/x rw\n", disk + "p4 is mounted on /data x"},
		{"both", "21 1 254:9 / / ro - squashfs /dev/dm-0 ro\n30 21 259:44 / /data rw - ext4 /dev/x rw\n", "dm-0 is mounted on /, " + disk + "p4 is mounted on /data"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(mountinfo, []byte(tt.mounts), 0o644)
			got, err := s.InUse(dev)
			if err != nil || got != tt.want {
				t.Fatalf("InUse = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if got, err := s.InUse(img); err != nil || got != "" {
		t.Errorf("InUse(image file) = %q, %v; want not in use", got, err)
	}
}

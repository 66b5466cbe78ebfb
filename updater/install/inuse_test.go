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

	"github.com/plumb-os/plumb/builder/diskimg"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/config"
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
	return &config.Installer{ESPSize: diskimg.MinESPSize, RootSize: diskimg.MinRootSize, DataSize: diskimg.MinDataSize, Seed: "inuse-test"}
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
	size := int64(2) * (diskimg.MinESPSize + 2*diskimg.MinRootSize + diskimg.MinDataSize)
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

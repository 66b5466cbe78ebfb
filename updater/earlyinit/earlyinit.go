// Package earlyinit is Plumb's early userspace: the /init (PID 1) of the
// initramfs that builder/initramfs writes. It owns the way from the kernel
// to the slot's root filesystem, and the BootInfo it leaves for the agent.
//
// Main runs the steps in order, logging each to the console:
//
//  1. mount devtmpfs on /dev, proc on /proc, sysfs on /sys
//  2. load the modules listed in /lib/modules/load-order
//  3. find the partition of root=PARTUUID=<uuid> by reading the GPT of every
//     disk, retrying for up to 10 s while devices appear
//  4. with plumb.verity.* on the command line: map the slot through the
//     device mapper's verity target (dmverity.go, format/verity), so that
//     every block read from here on is checked against the signed root
//     hash; a mismatch is an I/O error, and fatal
//  5. with a TPM: hash the slot's squashfs image (through dm-verity when
//     mapped: a corrupted block anywhere fails the boot) and extend PCR 15
//     with it ("plumb.rootfs", measure.go)
//  6. mount it read-only (squashfs) on /newroot, a tmpfs on /newroot/run,
//     and overlays with a tmpfs upper layer on /etc and /var; with a TPM,
//     extend PCR 15 with the image's release version ("plumb.release")
//     and log both extends to /newroot/run/plumb/measurements.json
//  7. mount the disk's "plumb-data" partition (ext4) on /newroot/data; if
//     that fails, boot on without /data (it is never formatted here)
//  8. write BootInfo to /newroot/run/plumb/boot.json
//  9. move /dev, /proc and /sys into the new root, free the initramfs,
//     switch root and exec /sbin/init (or init= from the command line)
//
// A missing TPM or a failed measurement is not fatal: the boot goes on and
// BootInfo says why nothing (or not everything) was measured; attestation
// then fails with that reason. The log always replays to PCR 15, also when
// an extend failed, or says that PCR 15's state is unknown (measure.go). Any other failure is fatal: it is logged, and after 5 s the machine reboots so
// that boot counting falls back to the other slot; with plumb.debug on the
// command line it waits forever instead.
package earlyinit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/verity"
)

// Names the early init relies on.
const (
	// DefaultInit is run in the new root unless init= says otherwise.
	DefaultInit = "/sbin/init"
	// overlayDir holds the upper and work directories of the /etc and /var
	// overlays, inside the new root's /run tmpfs.
	overlayDir = "/run/plumb-overlay"
	rootWait   = 10 * time.Second
	failDelay  = 5 * time.Second
)

// Main is the whole program: it runs the boot and never returns. On failure
// it reboots (or, with plumb.debug, waits forever).
func Main() {
	start := time.Now()
	con := &console{w: os.Stderr}
	log := slog.New(slog.NewTextHandler(con, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	err := run(context.Background(), start, con, log)
	fail(log, err)
}

// run returns only on failure; on success it has exec'd the real init.
func run(ctx context.Context, start time.Time, con *console, log *slog.Logger) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("plumb-init must run as PID 1 in an initramfs, got PID %d", os.Getpid())
	}
	log.Info("starting")

	// 1. The kernel's virtual filesystems.
	for _, m := range []struct {
		src, dir, fstype string
		flags            uintptr
	}{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.dir, err)
		}
		err := unix.Mount(m.src, m.dir, m.fstype, m.flags, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dir, err)
		}
		log.Info("mounted", "fstype", m.fstype, "dir", m.dir)
	}
	con.open("/dev/console")

	// 2. Modules.
	if err := loadModules(bootrecord.LoadOrderPath, log); err != nil {
		return err
	}

	// 3. The root partition.
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading kernel command line: %w", err)
	}
	cmdline := ParseCmdline(string(raw))
	partuuid, err := cmdline.RootPARTUUID()
	if err != nil {
		return err
	}
	log.Info("looking for root", "partuuid", partuuid)
	root, data, err := waitForRoot(ctx, defaultBlockPaths, partuuid, log)
	if err != nil {
		return err
	}
	bi := bootrecord.BootInfo{
		Slot:         disklayout.SlotOf(root.Name),
		CmdlineSlot:  cmdline["plumb.slot"],
		RootPARTUUID: root.PARTUUID,
		RootDevice:   root.Device,
	}
	log.Info("root found", "device", root.Device, "partition", root.Name, "slot", bi.Slot)
	if data != nil {
		failureTarget.bi = &bi
		if cmdline[datapart.CmdlineKey] != datapart.Sealed {
			failureTarget.dataDev = data.Device
		}
	}
	if bi.CmdlineSlot != "" && bi.CmdlineSlot != string(bi.Slot) {
		log.Warn("plumb.slot on the command line differs from the root partition's slot", "cmdline", bi.CmdlineSlot, "partition", root.Name)
	}

	// 3b. With plumb.verity.* on the command line, every block of the root
	// is checked against the hash tree from here on (format/verity).
	rootDev := root.Device
	vp, err := verity.FromCmdline(cmdline)
	switch {
	case errors.Is(err, verity.ErrNone):
	case err != nil:
		return err
	default:
		start := time.Now()
		rootDev, err = openVerity(root.Device, vp, VerityName)
		if err != nil {
			return err
		}
		bi.VerityRootHash, bi.VerityDevice = hex.EncodeToString(vp.RootHash), rootDev
		log.Info("root mapped through dm-verity", "device", rootDev, "root_hash", bi.VerityRootHash, "data_blocks", vp.DataBlocks, "ms", time.Since(start).Milliseconds())
	}

	// 3c. With plumb.data=luks2-tpm (in the signed UKI's command line), the
	// data partition is a LUKS2 volume whose key the TPM unseals only
	// while PCR 15 is still zero: before the root is measured.
	dataDev, dataSealed := "", cmdline[datapart.CmdlineKey] == datapart.Sealed
	if data != nil {
		dataDev = data.Device
		if dataSealed {
			bi.DataEncryption = datapart.Sealed
			start := time.Now()
			node, err := openSealedData(ctx, data.Device, log)
			if err != nil {
				dataDev, bi.DataError = "", err.Error()
				log.Error("data partition not unlocked: booting with an empty tmpfs on /data", "device", data.Device, "err", err)
			} else {
				dataDev, failureTarget.dataDev = node, node
				bi.DataUnlockMillis = time.Since(start).Milliseconds()
			}
		}
	}

	// 4. Measure the image before anything reads it as a filesystem.
	fstype := "squashfs"
	if v := cmdline["rootfstype"]; v != "" {
		fstype = v
	}
	m, err := measureRootfs(ctx, rootDev, fstype, &bi, log)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bootrecord.NewRoot, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", bootrecord.NewRoot, err)
	}
	if err := unix.Mount(rootDev, bootrecord.NewRoot, fstype, unix.MS_RDONLY, ""); err != nil {
		if bi.VerityDevice != "" && errors.Is(err, unix.EIO) {
			return fmt.Errorf("mounting root %s (%s) on %s: %w (dm-verity: a block of slot %s does not match root hash %s)", rootDev, fstype, bootrecord.NewRoot, err, bi.Slot, bi.VerityRootHash)
		}
		return fmt.Errorf("mounting root %s (%s) on %s: %w", rootDev, fstype, bootrecord.NewRoot, err)
	}
	log.Info("mounted root", "device", rootDev, "fstype", fstype, "dir", bootrecord.NewRoot)
	if err := unix.Mount("tmpfs", bootrecord.NewRoot+"/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting tmpfs on %s/run (the root must have a /run directory): %w", bootrecord.NewRoot, err)
	}
	for _, dir := range []string{"/etc", "/var"} {
		if err := mountOverlay(dir); err != nil {
			return err
		}
		log.Info("writable overlay", "dir", dir, "upper", overlayDir+dir)
	}
	measureRelease(m, &bi, log)

	// 6. Data.
	switch {
	case data == nil:
		bi.DataError = "no " + disklayout.NameData + " partition on " + root.Disk
		log.Warn("no data partition: booting without /data", "disk", root.Disk)
	case dataDev == "":
		// Sealed and not unlocked: the agent runs on an empty tmpfs and
		// reports bi.DataError; nothing is written to the partition.
		bi.DataDevice = data.Device
		if err := unix.Mount("tmpfs", bootrecord.NewRoot+"/data", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=32m"); err != nil {
			log.Error("mounting tmpfs on /data failed", "err", err)
		}
	default:
		bi.DataDevice = dataDev
		if err := unix.Mount(dataDev, bootrecord.NewRoot+"/data", "ext4", 0, ""); err != nil {
			bi.DataError = err.Error()
			log.Error("mounting data failed: booting without /data", "device", data.Device, "err", err)
		} else {
			bi.DataMounted = true
			failureTarget.mounted = bootrecord.NewRoot + "/data"
			log.Info("mounted data", "device", dataDev, "dir", "/data")
		}
	}

	// 7. Boot facts for the agent.
	bi.InitMillis = time.Since(start).Milliseconds()
	bi.UptimeMillis = uptimeMillis()
	if err := bootrecord.WriteBootInfo(bootrecord.NewRoot+bootrecord.BootInfoPath, bi); err != nil {
		return err
	}
	log.Info("wrote boot info", "path", bootrecord.BootInfoPath, "init_ms", bi.InitMillis, "uptime_ms", bi.UptimeMillis)

	// 8. Hand over.
	initPath := DefaultInit
	if v := cmdline["init"]; v != "" {
		initPath = v
	}
	return switchRoot(initPath, con, log)
}

// measureRootfs extends PCR 15 with the root image's sha256. It returns
// nil when there is no TPM or the image could not be hashed (bi says why);
// otherwise the measurer, whose log measureRelease writes, also when this
// extend failed (the log then says what PCR 15 holds: measure.go). On a
// dm-verity root, reading the image checks every block: an I/O error
// there is corruption, and fatal.
func measureRootfs(ctx context.Context, dev, fstype string, bi *bootrecord.BootInfo, log *slog.Logger) (*measurer, error) {
	tpm, err := openTPM(tpmDevices)
	if err != nil {
		bi.MeasureError = err.Error()
		log.Warn("not measuring the root: no TPM", "err", err)
		return nil, nil
	}
	var fatal error
	fail := func(err error) *measurer {
		tpm.Close()
		if bi.VerityDevice != "" && errors.Is(err, unix.EIO) {
			fatal = fmt.Errorf("dm-verity: slot %s does not match root hash %s: %w", bi.Slot, bi.VerityRootHash, err)
			return nil
		}
		bi.MeasureError = err.Error()
		log.Error("measuring the root failed: booting unmeasured", "err", err)
		return nil
	}
	if fstype != "squashfs" {
		return fail(fmt.Errorf("root filesystem type %s: only squashfs images are measured", fstype)), nil
	}
	start := time.Now()
	sum, size, err := HashImage(ctx, dev)
	if err != nil {
		m := fail(err)
		return m, fatal
	}
	m := &measurer{tpm: tpm, warnings: log}
	if err := m.extend(bootrecord.RootfsMeasurement(sum)); err != nil {
		bi.MeasureError = err.Error()
		log.Error("measuring the root failed: booting unmeasured", "err", err)
		return m, nil
	}
	bi.RootfsSHA256, bi.RootfsSize = sum, size
	log.Info("measured root", "pcr", bootrecord.MeasurePCR, "sha256", sum, "bytes", size, "ms", time.Since(start).Milliseconds())
	return m, nil
}

// measureRelease extends PCR 15 with the mounted image's release version,
// unless measuring the root failed, and writes the measurement log into
// the new root's /run.
func measureRelease(m *measurer, bi *bootrecord.BootInfo, log *slog.Logger) {
	if m == nil {
		return
	}
	defer m.tpm.Close()
	if bi.MeasureError == "" {
		version, err := releaseVersion(bootrecord.NewRoot)
		if err == nil {
			err = m.extend(bootrecord.ReleaseMeasurement(version))
		}
		if err != nil {
			bi.MeasureError = err.Error()
			log.Error("measuring the release failed", "err", err)
		} else {
			log.Info("measured release", "pcr", bootrecord.MeasurePCR, "version", version)
		}
	}
	if err := bootrecord.WriteMeasurements(bootrecord.NewRoot+bootrecord.MeasurementsPath, m.log); err != nil {
		bi.MeasureError = err.Error()
		log.Error("writing the measurement log failed", "err", err)
		return
	}
	bi.Measured = bi.MeasureError == ""
}

// waitForRoot looks for the root partition until it appears or rootWait
// has passed.
func waitForRoot(ctx context.Context, bp blockPaths, partuuid string, log *slog.Logger) (partition, *partition, error) {
	deadline := time.Now().Add(rootWait)
	for {
		root, data, err := findRoot(bp, partuuid, disklayout.NameData, log)
		if err == nil {
			return root, data, nil
		}
		if !errors.Is(err, errNotFound) || time.Now().After(deadline) {
			return partition{}, nil, fmt.Errorf("finding root partition after %s: %w", rootWait, err)
		}
		select {
		case <-ctx.Done():
			return partition{}, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mountOverlay covers dir of the new root with an overlay whose upper layer
// lives in the new root's /run tmpfs.
func mountOverlay(dir string) error {
	upper := bootrecord.NewRoot + overlayDir + dir + "/upper"
	work := bootrecord.NewRoot + overlayDir + dir + "/work"
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("overlay for %s: %w", dir, err)
		}
	}
	lower := bootrecord.NewRoot + dir
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", lower, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting overlay on %s (%s): %w", dir, opts, err)
	}
	return nil
}

// loadModules loads each module named in the load-order file. A missing
// file means no modules; a module that is already loaded is fine; any other
// failure is logged and the boot goes on (finding the root decides).
func loadModules(listPath string, log *slog.Logger) error {
	b, err := os.ReadFile(listPath)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no modules to load", "list", listPath)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading module list: %w", err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := loadModule(p); err != nil {
			log.Error("module not loaded", "module", p, "err", err)
			continue
		}
		n++
	}
	log.Info("modules loaded", "count", n)
	return nil
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module: %w", err)
	}
	return nil
}

// switchRoot moves the kernel filesystems into the new root, frees the
// initramfs, makes the new root "/" and execs init there.
func switchRoot(initPath string, con *console, log *slog.Logger) error {
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, bootrecord.NewRoot+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the new root (the root must have a %s directory): %w", d, d, err)
		}
	}
	if err := os.Chdir(bootrecord.NewRoot); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	if n, err := freeInitramfs(); err != nil {
		log.Warn("initramfs not freed", "err", err)
	} else {
		log.Info("freed initramfs", "files", n)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switching root: moving %s to /: %w", bootrecord.NewRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switching root: chroot: %w", err)
	}
	if failureTarget.mounted != "" {
		failureTarget.mounted = "/data"
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("switching root: %w", err)
	}
	log.Info("starting init", "path", initPath)
	con.close()
	argv := append([]string{initPath}, os.Args[1:]...)
	err := syscall.Exec(initPath, argv, os.Environ())
	return fmt.Errorf("exec %s in the new root: %w", initPath, err)
}

// freeInitramfs deletes the initramfs's files (everything on the device of
// "/", not crossing into other mounts), as switch_root does, so their
// memory is returned. It refuses unless "/" is a ramfs or tmpfs.
func freeInitramfs() (int, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return 0, fmt.Errorf("statfs /: %w", err)
	}
	if sfs.Type != unix.RAMFS_MAGIC && sfs.Type != unix.TMPFS_MAGIC {
		return 0, fmt.Errorf("/ is not an initramfs (filesystem magic %#x)", sfs.Type)
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return 0, fmt.Errorf("stat /: %w", err)
	}
	return removeOnDevice("/", st.Dev, false)
}

// removeOnDevice removes the contents of dir that live on device dev (and
// dir itself when self), leaving other mounts alone.
func removeOnDevice(dir string, dev uint64, self bool) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Dev != dev {
			continue
		}
		if e.IsDir() {
			m, err := removeOnDevice(p, dev, true)
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		if err := os.Remove(p); err == nil {
			n++
		}
	}
	if self {
		// Busy mount points (/newroot) stay; that is expected.
		_ = os.Remove(dir)
	}
	return n, nil
}

func uptimeMillis() int64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return int64(s * 1000)
}

// fail logs err, then reboots after failDelay, or with plumb.debug on the
// command line waits forever. It never returns.
func fail(log *slog.Logger, err error) {
	log.Error("FATAL: boot failed", "err", err)
	if os.Getpid() == 1 {
		if rerr := recordFailure(err); rerr != nil {
			log.Warn("boot failure not recorded on the data partition", "err", rerr)
		} else {
			log.Info("boot failure recorded", "file", "/data/"+bootrecord.BootFailureFile)
		}
	}
	if raw, rerr := os.ReadFile("/proc/cmdline"); rerr == nil && ParseCmdline(string(raw)).Has("plumb.debug") {
		log.Error("plumb.debug is set: not rebooting; waiting forever")
		for {
			time.Sleep(time.Hour)
		}
	}
	log.Error("rebooting", "in", failDelay.String())
	time.Sleep(failDelay)
	unix.Sync()
	if os.Getpid() == 1 {
		rerr := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		log.Error("reboot failed", "err", rerr)
	}
	os.Exit(1) // PID 1 exiting panics the kernel, which panic= reboots
}

// console is the log's destination: stderr until /dev/console can be
// opened, then /dev/console. Every line starts with "plumb-init: ".
type console struct {
	mu sync.Mutex
	w  io.Writer
	f  *os.File
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.w, "plumb-init: "); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func (c *console) open(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w, c.f = f, f
}

func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
		c.w = os.Stderr
	}
}

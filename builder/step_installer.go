package builder

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/builder/initramfs"
	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/diskimg"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// The installer's init script and udhcpc's event script.
var (
	//go:embed installer.sh
	installerInit string
	//go:embed udhcpc.sh
	udhcpcScript string
)

// Paths in the installer initramfs.
const (
	installerBootloader = "/etc/plumb/BOOTX64.EFI"
	installerData       = "/etc/plumb/data.img.zst"
	// installerBusybox is where busybox-static keeps its binary.
	installerBusybox = "bin/busybox"
)

// installerModules are added to the recipe's modules in the installer: it
// needs the network besides the disk, and efivarfs (a module in Debian's
// kernels) to learn which partition systemd-boot started it from, so that
// it never writes the USB stick it booted from.
var installerModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "efivarfs"}

// installerUKIPath is the installer's signed UKI on the USB image's ESP.
const installerUKIPath = "/installer/installer.efi"

// installerCmdline is the installer entry's kernel command line on the USB
// image (besides the recipe's console and log settings).
const installerCmdline = "plumb.disk=auto"

// writeInstaller builds the installer: an initramfs holding busybox, plumbd,
// the agent's configuration with the trusted root (and CA), the modules, the
// disk layout with the empty data filesystem, and an init that brings up
// the network and runs `plumbd install`; and a bootable USB image whose ESP
// boots the release's kernel with that initramfs.
func (b *build) writeInstaller(ctx context.Context, _ *progress.Step) error {
	extra := fstree.New()
	mt := b.epoch
	for _, d := range []string{"bin", "etc/plumb", "usr/bin", "tmp"} {
		if err := extra.MkdirAll(d, mt); err != nil {
			return err
		}
	}
	put := func(p string, mode os.FileMode, src fstree.Source, size int64) error {
		return extra.Put(p, &fstree.Node{Mode: mode, ModTime: mt, Size: size, Source: src})
	}
	bb, err := b.installerBusybox(ctx)
	if err != nil {
		return err
	}
	agentBin, err := os.Stat(b.opts.Agent)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		p    string
		mode os.FileMode
		src  fstree.Source
		size int64
	}{
		{installerBusybox, 0o755, bb.Source, bb.Size},
		{"usr/bin/plumbd", 0o755, fstree.HostFile(b.opts.Agent), agentBin.Size()},
		{"etc/udhcpc.script", 0o755, fstree.Bytes(udhcpcScript), int64(len(udhcpcScript))},
		{installerBootloader, 0o644, b.espBoot.Source, b.espBoot.Size},
	} {
		if err := put(f.p, f.mode, f.src, f.size); err != nil {
			return err
		}
	}
	if err := extra.Put("bin/sh", &fstree.Node{Mode: os.ModeSymlink | 0o777, ModTime: mt, Target: "busybox"}); err != nil {
		return err
	}
	// The agent's configuration, root and CA, as in the root filesystem.
	for _, p := range []string{config.Path, config.RootPath, config.CAPath} {
		if n := b.tree.Get(p); n != nil {
			if err := put(p, 0o644, n.Source, n.Size); err != nil {
				return err
			}
		}
	}
	inst, dataZst, err := b.installerDisk()
	if err != nil {
		return err
	}
	fi, err := os.Stat(dataZst)
	if err != nil {
		return err
	}
	if err := put(installerData, 0o644, fstree.HostFile(dataZst), fi.Size()); err != nil {
		return err
	}
	if b.sb != nil {
		db, err := certOf(b.sb.cert)
		if err != nil {
			return err
		}
		inst.SecureBootDB = db.SHA256
	}
	data, err := json.MarshalIndent(inst, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := put(config.InstallerPath, 0o644, fstree.Bytes(data), int64(len(data))); err != nil {
		return err
	}

	initPath := filepath.Join(b.work, "installer-init")
	if err := os.WriteFile(initPath, []byte(installerInit), 0o755); err != nil {
		return err
	}
	var mods []string
	if len(b.r.Kernel.Modules) > 0 {
		mods = slices.Clone(b.r.Kernel.Modules)
		for _, m := range installerModules {
			if !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
	}
	out := filepath.Join(b.work, InstallerInitrdFile)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	err = initramfs.Build(ctx, f, initramfs.Options{
		Init:          initPath,
		KernelTree:    b.kernel.tree,
		KernelRelease: b.kernel.release,
		Modules:       mods,
		ModTime:       mt,
		Extra:         extra,
		TempDir:       b.work,
		Log:           b.log,
	})
	if err != nil {
		return fmt.Errorf("installer initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("installer initramfs: %w", err)
	}
	return b.writeInstallerDisk(ctx, out)
}

// installerBusybox unpacks busybox-static (fetched with the other packages)
// and returns its binary.
func (b *build) installerBusybox(ctx context.Context) (*fstree.Node, error) {
	deb, err := b.fetch.Fetch(ctx, installerBusyboxPackage)
	if err != nil {
		return nil, fmt.Errorf("%w: installer: %w", ErrBadInput, err)
	}
	t := fstree.New()
	if err := rootfs.AddDeb(ctx, t, b.store, deb); err != nil {
		return nil, fmt.Errorf("unpacking %s: %w", installerBusyboxPackage, err)
	}
	n := t.Get(installerBusybox)
	if n == nil || !n.IsRegular() {
		return nil, fmt.Errorf("%w: package %s has no /%s", ErrBadInput, installerBusyboxPackage, installerBusybox)
	}
	return n, nil
}

// installerBusyboxPackage provides the installer's shell and network tools.
const installerBusyboxPackage = "busybox-static"

// installerDisk describes the disk the installer writes (the build's own
// layout) and compresses the build disk's empty data filesystem for it.
func (b *build) installerDisk() (*config.Installer, string, error) {
	var data disklayout.Partition
	for _, p := range b.disk.partitions {
		if p.Name == disklayout.NameData {
			data = p
		}
	}
	src, err := os.Open(b.diskPath)
	if err != nil {
		return nil, "", err
	}
	defer src.Close()
	dst := filepath.Join(b.work, "data.img.zst")
	out, err := os.Create(dst)
	if err != nil {
		return nil, "", err
	}
	defer out.Close()
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(zw, h), io.NewSectionReader(src, data.Start, data.Size))
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("installer data image: %w", err)
	}
	return &config.Installer{
		ESPSize:    int64(b.r.Partitions.ESP),
		RootSize:   int64(b.r.Partitions.Root),
		DataSize:   data.Size, // the partition, aligned
		Seed:       b.r.Name + "/" + b.r.Hardware,
		ModTime:    max(b.epoch, fatEpoch),
		Bootloader: installerBootloader,
		Data:       installerData,
		DataSHA256: hex.EncodeToString(h.Sum(nil)),
		DataBytes:  n,
	}, dst, nil
}

// writeInstallerDisk writes the USB image: an ESP with systemd-boot and
// one entry booting the release's kernel with the installer initramfs. A
// build with boot.secure_boot boots the installer's signed UKI instead
// (installerUKIPath, through the signed systemd-boot), so that the
// installer runs under Secure Boot with the owner's keys.
func (b *build) writeInstallerDisk(ctx context.Context, initrd string) error {
	fi, err := os.Stat(initrd)
	if err != nil {
		return err
	}
	cmdline := installerCmdline + " " + b.r.Kernel.Cmdline
	head := fmt.Sprintf("title Plumb installer %s\nsort-key plumb-installer\nversion %s\n", b.r.Version, b.r.Version)
	files := []diskimg.ESPFile{
		{Path: bootentry.Bootloader, Source: b.espBoot.Source, Size: b.espBoot.Size},
		{Path: bootentry.LoaderConfPath, Source: fstree.Bytes(bootentry.LoaderConf), Size: int64(len(bootentry.LoaderConf))},
	}
	var entry string
	if b.sb != nil {
		signed, err := b.signInstallerUKI(ctx, initrd, cmdline)
		if err != nil {
			return err
		}
		ufi, err := os.Stat(signed)
		if err != nil {
			return err
		}
		entry = head + "efi " + installerUKIPath + "\n"
		files = append(files, diskimg.ESPFile{Path: installerUKIPath, Source: fstree.HostFile(signed), Size: ufi.Size()})
	} else {
		entry = head + fmt.Sprintf("linux /installer/vmlinuz\ninitrd /installer/initrd\noptions %s\n", cmdline)
		files = append(files,
			diskimg.ESPFile{Path: "/installer/vmlinuz", Source: b.kernel.image.Source, Size: b.kernel.image.Size},
			diskimg.ESPFile{Path: "/installer/initrd", Source: fstree.HostFile(initrd), Size: fi.Size()})
	}
	files = append(files, diskimg.ESPFile{Path: bootentry.EntriesDir + "/plumb-installer.conf", Source: fstree.Bytes(entry), Size: int64(len(entry))})
	seed := b.r.Name + "/" + b.r.Hardware + "/installer"
	if err := diskimg.WriteBootDisk(ctx, filepath.Join(b.work, InstallerDiskFile), seed, files, max(b.epoch, fatEpoch)); err != nil {
		return fmt.Errorf("installer disk image: %w", err)
	}
	return nil
}

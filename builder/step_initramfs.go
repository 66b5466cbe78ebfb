package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plumb-os/plumb/builder/initramfs"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// modules are the recipe's modules and, with boot.verity, dm_verity (and
// through modules.dep dm_mod and dm_bufio). A kernel given as a bare file
// without modules must have dm-verity built in.
func (b *build) modules() []string {
	m := b.r.Kernel.Modules
	if b.r.Boot.Verity && b.kernel.release != "" && !slices.Contains(m, "dm_verity") && !slices.Contains(m, "dm-verity") {
		m = append(slices.Clone(m), "dm_verity")
	}
	if b.r.Partitions.DataEncryption == recipe.DataSealed && b.kernel.release != "" {
		// The sealed data partition: the crypt target, its xts(aes)
		// cipher (aes is built in; xts instantiates ecb(aes), and the
		// kernel cannot load modules by itself in the initramfs: without
		// ecb the table load fails with ENOENT), efivarfs for the
		// SecureBoot variable a refusal is explained with.
		for _, name := range []string{"dm_crypt", "ecb", "xts", "efivarfs"} {
			if !slices.Contains(m, name) {
				m = append(slices.Clone(m), name)
			}
		}
	}
	return m
}

// kernelCmdline is the recipe's kernel command line and, with a sealed
// data partition, the word that asks plumb-init for it (format/datapart):
// inside the signed UKI, so only the owner's chain asks.
func (b *build) kernelCmdline() string {
	if b.r.Partitions.DataEncryption == recipe.DataSealed {
		return strings.TrimSpace(b.r.Kernel.Cmdline + " " + datapart.CmdlineKey + "=" + datapart.Sealed)
	}
	return b.r.Kernel.Cmdline
}

// buildInitramfs writes the initramfs (plumb-init plus the modules the
// recipe names, with their dependencies) and puts it into the root
// filesystem as /boot/initrd.img.
func (b *build) buildInitramfs(ctx context.Context, _ *progress.Step) error {
	if len(b.r.Kernel.Modules) > 0 && b.kernel.release == "" {
		return fmt.Errorf("%w: %s: kernel.modules lists %d modules, but kernel.file comes without a modules_dir to take them from", ErrBadInput, b.r.Origin, len(b.r.Kernel.Modules))
	}
	b.initrdPath = filepath.Join(b.work, InitrdFile)
	f, err := os.Create(b.initrdPath)
	if err != nil {
		return err
	}
	defer f.Close()
	err = initramfs.Build(ctx, f, initramfs.Options{
		Init:          b.opts.Init,
		KernelTree:    b.kernel.tree,
		KernelRelease: b.kernel.release,
		Modules:       b.modules(),
		ModTime:       b.epoch,
		TempDir:       b.work,
		Log:           b.log,
	})
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	fi, err := os.Stat(b.initrdPath)
	if err != nil {
		return err
	}
	return b.tree.Put(bootentry.ImageInitrd, &fstree.Node{Mode: 0o644, ModTime: b.epoch, Size: fi.Size(), Source: fstree.HostFile(b.initrdPath)})
}

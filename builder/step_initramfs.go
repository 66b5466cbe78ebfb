package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/initramfs"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

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
		Modules:       b.r.Kernel.Modules,
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

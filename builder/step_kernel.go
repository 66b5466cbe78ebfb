package builder

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// kernel is the recipe's kernel, unpacked.
type kernel struct {
	release string       // "6.1.0-56-cloud-amd64"
	image   *fstree.Node // the bootable kernel image (vmlinuz)
	tree    *fstree.Tree // the kernel's files: boot/, lib/modules/<release>/
}

// unpackKernel unpacks the kernel package (or takes the bare kernel file and
// its modules directory) into a tree of its own.
func (b *build) unpackKernel(ctx context.Context, _ *progress.Step) error {
	k := b.r.Kernel
	t := fstree.New()
	switch {
	case k.Package != "" || k.Deb != "":
		deb, what := k.Deb, k.Deb
		if k.Package != "" {
			var err error
			if deb, err = b.fetch.Fetch(ctx, k.Package); err != nil {
				return fmt.Errorf("%w: %w", ErrBadInput, err)
			}
			what = k.Package
		}
		if err := rootfs.AddDeb(ctx, t, b.store, deb); err != nil {
			return fmt.Errorf("unpacking kernel %s: %w", what, err)
		}
		var images []string
		for _, name := range t.Children("boot") {
			if strings.HasPrefix(name, "vmlinuz-") || strings.HasPrefix(name, "vmlinux-") {
				images = append(images, name)
			}
		}
		if len(images) != 1 {
			return fmt.Errorf("%w: kernel %s: expected one boot/vmlinuz-<release>, found %d", ErrBadInput, what, len(images))
		}
		release := strings.TrimPrefix(strings.TrimPrefix(images[0], "vmlinuz-"), "vmlinux-")
		b.kernel = &kernel{release: release, image: t.Get("boot/" + images[0]), tree: t}
	case k.File != "":
		release := ""
		if k.ModulesDir != "" {
			release = filepath.Base(k.ModulesDir)
			if err := rootfs.AddDir(t, k.ModulesDir, path.Join("lib/modules", release)); err != nil {
				return fmt.Errorf("kernel modules %s: %w", k.ModulesDir, err)
			}
		}
		fi, err := os.Stat(k.File)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: kernel %s is not a readable regular file", ErrBadInput, k.File)
		}
		n := &fstree.Node{Mode: 0o644, Size: fi.Size(), Source: fstree.HostFile(k.File)}
		b.kernel = &kernel{release: release, image: n, tree: t}
	default:
		return fmt.Errorf("%w: the recipe names no kernel", ErrBadInput)
	}
	if b.kernel.image == nil || !b.kernel.image.IsRegular() {
		return fmt.Errorf("%w: the kernel image is not a regular file", ErrBadInput)
	}
	b.log.Debug("kernel unpacked", "release", b.kernel.release, "bytes", b.kernel.image.Size)
	return nil
}

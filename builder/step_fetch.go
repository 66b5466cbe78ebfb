package builder

import (
	"context"
	"fmt"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// bootloaderEFI is systemd-boot's EFI binary inside the systemd-boot-efi
// package.
const bootloaderEFI = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// fetchPackages downloads every Debian package the recipe names (cache hits
// cost nothing) and unpacks the bootloader, so that later steps work
// offline.
func (b *build) fetchPackages(ctx context.Context, _ *progress.Step) error {
	names := []string{b.opts.Bootloader, installerBusyboxPackage}
	if b.r.Kernel.Package != "" {
		names = append(names, b.r.Kernel.Package)
	}
	for _, src := range b.r.Rootfs {
		if src.Kind() == recipe.SourceDeb {
			names = append(names, src.Deb...)
		}
	}
	for _, n := range names {
		if _, err := b.fetch.Fetch(ctx, n); err != nil {
			return fmt.Errorf("%w: %w", ErrBadInput, err)
		}
	}
	deb, err := b.fetch.Fetch(ctx, b.opts.Bootloader)
	if err != nil {
		return err
	}
	t := fstree.New()
	if err := rootfs.AddDeb(ctx, t, b.store, deb); err != nil {
		return fmt.Errorf("unpacking %s: %w", b.opts.Bootloader, err)
	}
	n := t.Get(bootloaderEFI)
	if n == nil || !n.IsRegular() {
		return fmt.Errorf("%w: package %s has no %s", ErrBadInput, b.opts.Bootloader, bootloaderEFI)
	}
	b.espBoot = n
	if s := t.Get(stubEFI); s != nil && s.IsRegular() {
		b.stub = s
	}
	return nil
}

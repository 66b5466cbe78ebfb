// Package builder turns a recipe into a release: the root filesystem image
// (squashfs) that devices pull, a flashable GPT disk image, the kernel and
// initrd, and a manifest of them all.
//
// Build runs the steps in order, one file each: fetch (step_fetch.go),
// kernel (step_kernel.go), root filesystem (step_rootfs.go), initramfs
// (step_initramfs.go), squashfs (step_squashfs.go), disk (step_disk.go),
// installer (step_installer.go) and manifest (manifest.go). Everything is written into a private work
// directory and moved into the output directory only when every step
// succeeded, so a failed build leaves nothing behind. The same recipe and
// SOURCE_DATE_EPOCH give byte-identical outputs.
package builder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// Output file names inside the output directory.
const (
	DiskFile     = "disk.img"
	RootfsFile   = "rootfs.sqfs"
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
	ManifestFile = "manifest.json"
	// InstallerInitrdFile is the installer's initramfs (it boots with
	// KernelFile); InstallerDiskFile the bootable USB image holding both.
	InstallerInitrdFile = "installer-initrd.img"
	InstallerDiskFile   = "installer.img"
)

// outputs are the files a build moves into the output directory, the
// manifest last.
var outputs = []string{DiskFile, RootfsFile, KernelFile, InitrdFile, InstallerInitrdFile, InstallerDiskFile}

// Options are the build's inputs besides the recipe.
type Options struct {
	// OutDir receives the outputs; created if missing. Existing outputs
	// of an earlier build are replaced only after this build succeeded.
	OutDir string
	// CacheDir keeps downloaded Debian packages between builds.
	CacheDir string
	// Agent and Init are the host paths of the plumbd and plumb-init
	// binaries to put into the root filesystem and the initramfs.
	Agent, Init string
	// Epoch, when set, replaces the recipe's epoch (SOURCE_DATE_EPOCH).
	Epoch *int64
	// Bootloader is the Debian package providing systemd-boot's EFI
	// binary; default "systemd-boot-efi".
	Bootloader string
	// SecureBootKey and SecureBootCert, when set, replace the recipe's
	// boot.secure_boot key and certificate (PEM files).
	SecureBootKey, SecureBootCert string
	Log                           *slog.Logger
	Progress                      *progress.Reporter
}

// ErrBadInput marks build failures caused by the recipe or the options
// (a missing package, content larger than a partition).
var ErrBadInput = errors.New("bad build input")

// build is one build in progress: its inputs and what the steps produced.
type build struct {
	r     *recipe.Recipe
	opts  Options
	log   *slog.Logger
	epoch int64
	work  string // private work directory
	store *fstree.Store
	fetch *rootfs.Fetcher

	kernel     *kernel        // step_kernel
	tree       *fstree.Tree   // step_rootfs
	initrdPath string         // step_initramfs
	rootfsPath string         // step_squashfs
	diskPath   string         // step_disk
	espBoot    *fstree.Node   // step_fetch: systemd-boot's EFI binary
	disk       *diskResult    // step_disk
	verity     *verity.Params // step_verity, with boot.verity
	verityPath string
	stub       *fstree.Node // step_fetch: systemd's UKI stub
	sb         *secureBoot  // step_secureboot, with boot.secure_boot
}

// outputs are the files this build moves into the output directory, the
// manifest not included.
func (b *build) outputs() []string {
	out := append([]string{}, outputs...)
	if b.verity != nil {
		out = append(out, VerityFile)
	}
	if b.sb != nil {
		out = append(out, UKIFile("a"), UKIFile("b"), InstallerUKIFile)
	}
	return out
}

// Build runs every step for r and returns the manifest it wrote.
func Build(ctx context.Context, r *recipe.Recipe, opts Options) (*Manifest, error) {
	if opts.OutDir == "" {
		return nil, fmt.Errorf("%w: no output directory given", ErrBadInput)
	}
	for name, p := range map[string]string{"plumbd": opts.Agent, "plumb-init": opts.Init} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s binary not found at %q (run make build, or pass its path)", ErrBadInput, name, p)
		}
	}
	if opts.Bootloader == "" {
		opts.Bootloader = "systemd-boot-efi"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Progress == nil {
		opts.Progress = progress.Discard()
	}
	b := &build{r: r, opts: opts, log: opts.Log, epoch: r.Epoch}
	if opts.Epoch != nil {
		b.epoch = *opts.Epoch
	}

	out, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	createdOut := false
	if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, fmt.Errorf("creating output directory: %w", err)
		}
		createdOut = true
	}
	b.work, err = os.MkdirTemp(out, ".plumb-build-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(b.work)

	m, err := b.run(ctx)
	if err == nil {
		err = b.publish(out, m)
	}
	if err != nil {
		os.RemoveAll(b.work)
		if createdOut {
			os.Remove(out) // only if empty: never remove anything else
		}
		return nil, err
	}
	return m, nil
}

func (b *build) run(ctx context.Context) (*Manifest, error) {
	var err error
	if b.store, err = fstree.NewStore(filepath.Join(b.work, "blobs")); err != nil {
		return nil, err
	}
	b.fetch = &rootfs.Fetcher{CacheDir: filepath.Join(b.opts.CacheDir, "debs"), Log: b.log}
	steps := []struct {
		name string
		fn   func(context.Context, *progress.Step) error
	}{
		{"fetch packages", b.fetchPackages},
		{"kernel", b.unpackKernel},
		{"root filesystem", b.assembleRootfs},
		{"initramfs", b.buildInitramfs},
		{"squashfs", b.writeSquashfs},
		{"verity", b.writeVerity},
		{"secure boot", b.signBootChain},
		{"disk image", b.writeDisk},
		{"installer", b.writeInstaller},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := b.opts.Progress.Start(s.name)
		if err := s.fn(ctx, st); err != nil {
			return nil, err
		}
		st.Done()
		b.log.Debug("build step done", "step", s.name)
	}
	return b.manifest()
}

// publish moves the outputs from the work directory into out, the manifest
// last, so that a manifest always describes complete outputs.
func (b *build) publish(out string, m *Manifest) error {
	if err := writeManifest(filepath.Join(b.work, ManifestFile), m); err != nil {
		return err
	}
	// An interrupted publish must not leave an old manifest describing
	// new files.
	if err := os.Remove(filepath.Join(out, ManifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replacing the manifest: %w", err)
	}
	for _, name := range append(b.outputs(), ManifestFile) {
		if err := os.Rename(filepath.Join(b.work, name), filepath.Join(out, name)); err != nil {
			return fmt.Errorf("moving %s into %s: %w", name, out, err)
		}
	}
	return nil
}

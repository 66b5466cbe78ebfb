package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/progress"
)

// VerityFile is the hash area (veritysetup superblock and hash tree) of
// the root image, an output of builds with boot.verity; the disk image's
// slot A holds it at the tree's hash offset (format/verity/FORMAT.md).
const VerityFile = "rootfs.verity"

// writeVerity computes the dm-verity hash tree of the root image, salted
// with the image's sha256, and writes its hash area beside it. The root
// hash goes into the boot entry's command line and the manifest.
func (b *build) writeVerity(ctx context.Context, _ *progress.Step) error {
	if !b.r.Boot.Verity {
		return nil
	}
	d, err := digestFile(b.rootfsPath)
	if err != nil {
		return err
	}
	salt, err := verity.SaltFor(d.SHA256)
	if err != nil {
		return err
	}
	img, err := os.Open(b.rootfsPath)
	if err != nil {
		return err
	}
	defer img.Close()
	path := filepath.Join(b.work, VerityFile)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := verity.Build(img, d.Size, salt, f)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	b.verity, b.verityPath = p, path
	b.log.Debug("verity tree written", "root_hash", fmt.Sprintf("%x", p.RootHash), "data_blocks", p.DataBlocks, "hash_bytes", verity.HashAreaSize(p.DataBlocks))
	return ctx.Err()
}

// verityCmdline is the verity words of the boot entries, or "".
func (b *build) verityCmdline() string {
	if b.verity == nil {
		return ""
	}
	return b.verity.Cmdline()
}

// writeVerityToDisk puts the hash area into slot A of the disk image, after
// the root image and its zero padding.
func (b *build) writeVerityToDisk(start int64) error {
	if b.verity == nil {
		return nil
	}
	disk, err := os.OpenFile(b.diskPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer disk.Close()
	src, err := os.Open(b.verityPath)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := os.Stat(b.rootfsPath)
	if err != nil {
		return err
	}
	if pad := int64(b.verity.HashOffset) - fi.Size(); pad > 0 {
		if _, err := disk.WriteAt(make([]byte, pad), start+fi.Size()); err != nil {
			return fmt.Errorf("disk image: verity padding: %w", err)
		}
	}
	if _, err := io.Copy(io.NewOffsetWriter(disk, start+int64(b.verity.HashOffset)), src); err != nil {
		return fmt.Errorf("disk image: verity hash area: %w", err)
	}
	return disk.Close()
}

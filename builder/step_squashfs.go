package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/internal/progress"
)

// writeSquashfs writes the root filesystem image, the release devices pull.
func (b *build) writeSquashfs(ctx context.Context, _ *progress.Step) error {
	b.rootfsPath = filepath.Join(b.work, RootfsFile)
	f, err := os.Create(b.rootfsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := squashfs.Write(ctx, f, b.tree, squashfs.Options{
		Level:     b.r.Compression.Level,
		BlockSize: uint32(b.r.Compression.BlockSize),
		ModTime:   b.epoch,
	})
	if err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	b.log.Debug("squashfs written", "bytes", st.Bytes, "inodes", st.Inodes, "data_bytes", st.DataBytes)
	return nil
}

package rootfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"pault.ag/go/debian/deb"

	"github.com/plumb-os/plumb/internal/fstree"
)

// AddDeb unpacks the data.tar member of the Debian package at debPath into
// t, file contents into s, the way dpkg does on a fresh system: maintainer
// scripts are not run, a directory that already exists keeps its metadata,
// and an existing symlink to a directory (merged /usr's /bin -> usr/bin) is
// kept and followed. data.tar may be plain or compressed with gzip, xz, zstd
// or bzip2.
func AddDeb(ctx context.Context, t *fstree.Tree, s *fstree.Store, debPath string) error {
	if err := addDeb(ctx, t, s, debPath); err != nil {
		return fmt.Errorf("adding deb %s: %w", debPath, err)
	}
	return nil
}

func addDeb(ctx context.Context, t *fstree.Tree, s *fstree.Store, debPath string) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	ar, err := deb.LoadAr(f)
	if err != nil {
		return fmt.Errorf("not a Debian package (expected an ar archive): %w", err)
	}
	for {
		e, err := ar.Next()
		if err == io.EOF {
			return fmt.Errorf("no data.tar member")
		}
		if err != nil {
			return fmt.Errorf("reading ar container: %w", err)
		}
		if !strings.HasPrefix(e.Name, "data.tar") {
			continue
		}
		a, err := newApplier(t, s, ".", applyOpts{keepDirLinks: true, keepDirMeta: true})
		if err != nil {
			return err
		}
		plain, done, err := decompress(e.Data)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
		defer done()
		if err := a.applyTar(ctx, plain); err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
		return nil
	}
}

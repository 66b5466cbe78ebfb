package reconcile

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/plumb-os/plumb/format/workload"
)

// importPrefix names the images an archive import creates before they are
// checked; they are renamed to the manifest's reference or deleted.
const importPrefix = "plumb-import/"

// ensureImage makes the container's image present and unpacked, named by
// its pinned reference, and checks that the name's target is the pinned
// digest.
func (r *Reconciler) ensureImage(ctx context.Context, c *workload.Container, targets Targets) (client.Image, error) {
	want := c.Digest()
	img, err := r.client.GetImage(ctx, c.Image)
	switch {
	case err == nil && img.Target().Digest.String() == want:
		// present already
	case err != nil && !errdefs.IsNotFound(err):
		return nil, fmt.Errorf("looking up image %s: %w", c.Image, err)
	case c.Target != "":
		if img, err = r.importArchive(ctx, c, targets); err != nil {
			return nil, err
		}
	default:
		// A registry reference: the resolver fetches by the pinned
		// digest, and the content store checks every blob's digest.
		if img, err = r.client.Pull(ctx, c.Image, client.WithPullUnpack, client.WithPullSnapshotter(r.opts.Snapshotter)); err != nil {
			return nil, fmt.Errorf("pulling %s: %w", c.Image, err)
		}
	}
	if got := img.Target().Digest.String(); got != want {
		return nil, fmt.Errorf("%w: image %s resolves to %s, expected the pinned %s", ErrRefused, c.Image, got, want)
	}
	ok, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
	if err != nil {
		return nil, fmt.Errorf("checking image %s: %w", c.Image, err)
	}
	if !ok {
		if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking image %s: %w", c.Image, err)
		}
	}
	return img, nil
}

// importArchive downloads the archive target (verified against TUF,
// resumable) to StateDir/images, imports it and keeps only the pinned
// image, named by the manifest's reference.
func (r *Reconciler) importArchive(ctx context.Context, c *workload.Container, targets Targets) (client.Image, error) {
	if targets == nil {
		return nil, fmt.Errorf("image %s: archive %s: no repository to fetch it from", c.Image, c.Target)
	}
	file := filepath.Join(r.opts.StateDir, "images", strings.ReplaceAll(strings.TrimPrefix(c.Target, workload.TargetPrefix), "/", "_"))
	f, err := os.OpenFile(file+".part", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", c.Target, err)
	}
	defer os.Remove(file + ".part")
	defer f.Close()
	var done int64
	if fi, err := f.Stat(); err == nil {
		done = fi.Size() // DownloadFile re-hashes this prefix before resuming
	}
	n, err := targets.DownloadFile(ctx, c.Target, f, done, nil)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", c.Target, err)
	}
	r.log.Info("archive downloaded", "target", c.Target, "bytes", n)
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	imported, err := r.client.Import(ctx, f,
		client.WithDigestRef(func(d digest.Digest) string { return importPrefix + d.String() }),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: archive %s: importing: %v", ErrRefused, c.Target, err)
	}
	// Keep only the pinned manifest; names the archive carried itself are
	// dropped so that an archive cannot rename other images.
	want := c.Digest()
	var found *images.Image
	var held []string
	for i := range imported {
		im := imported[i]
		if im.Target.Digest.String() == want && found == nil {
			found = &im
		}
		if strings.HasPrefix(im.Name, importPrefix) {
			held = append(held, im.Target.Digest.String())
		}
		if im.Name != c.Image {
			if err := r.client.ImageService().Delete(ctx, im.Name); err != nil && !errdefs.IsNotFound(err) {
				r.log.Warn("deleting imported image name", "image", im.Name, "err", err)
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: archive %s holds no image %s (it holds %s): the manifest's digest does not match the archive",
			ErrRefused, c.Target, want, strings.Join(held, ", "))
	}
	rec := images.Image{Name: c.Image, Target: found.Target, Labels: map[string]string{labelName: path.Base(c.Target)}}
	saved, err := r.client.ImageService().Update(ctx, rec, "target", "labels")
	if errdefs.IsNotFound(err) {
		saved, err = r.client.ImageService().Create(ctx, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("naming image %s: %w", c.Image, err)
	}
	return client.NewImage(r.client, saved), nil
}

package rootfs

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/plumb-os/plumb/internal/fstree"
)

// maxMetadata bounds the JSON documents of an image (index, manifests).
const maxMetadata = 4 << 20

// maxIndexDepth bounds nested image indexes.
const maxIndexDepth = 4

// Media types Docker uses for the same documents and layers.
const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
)

// AddOCI applies the OCI image at path (an image-layout directory, or a
// plain tar archive of one such as `docker save` or skopeo's oci-archive
// writes) onto t: index.json, then the image manifest (the linux/amd64 one
// when the index lists several platforms), then its layers in order with
// OCI whiteouts (".wh.NAME" deletes NAME, ".wh..wh..opq" hides the
// directory's contents from earlier layers). Layers may be tar, tar+gzip or
// tar+zstd. Every blob's size and sha256 digest are checked while it is
// read; a mismatch fails with the blob's digest.
func AddOCI(ctx context.Context, t *fstree.Tree, s *fstree.Store, path string) error {
	if err := addOCI(ctx, t, s, path); err != nil {
		return fmt.Errorf("adding OCI image %s: %w", path, err)
	}
	return nil
}

func addOCI(ctx context.Context, t *fstree.Tree, s *fstree.Store, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	var l layout
	if fi.IsDir() {
		l = dirLayout(p)
	} else {
		tl, err := openTarLayout(p)
		if err != nil {
			return err
		}
		defer tl.Close()
		l = tl
	}
	if err := checkLayoutFile(l); err != nil {
		return err
	}
	var idx ocispec.Index
	if err := readJSON(l, "index.json", nil, &idx); err != nil {
		return err
	}
	m, err := pickManifest(l, idx, 0)
	if err != nil {
		return err
	}
	for i, d := range m.Layers {
		if err := applyLayer(ctx, t, s, l, d); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, d.Digest, err)
		}
	}
	return nil
}

func checkLayoutFile(l layout) error {
	var lay ocispec.ImageLayout
	if err := readJSON(l, ocispec.ImageLayoutFile, nil, &lay); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("not an OCI image layout: no %s file", ocispec.ImageLayoutFile)
		}
		return err
	}
	if lay.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%s: imageLayoutVersion %q, expected %q", ocispec.ImageLayoutFile, lay.Version, ocispec.ImageLayoutVersion)
	}
	return nil
}

// pickManifest follows idx to the image manifest for linux/amd64.
func pickManifest(l layout, idx ocispec.Index, depth int) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if depth > maxIndexDepth {
		return m, fmt.Errorf("image indexes nested deeper than %d", maxIndexDepth)
	}
	var pick *ocispec.Descriptor
	var seen []string
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		p := d.Platform
		if p == nil {
			if pick == nil {
				pick = d
			}
			continue
		}
		if p.OS == "linux" && p.Architecture == "amd64" {
			if pick == nil || pick.Platform == nil {
				pick = d
			}
			continue
		}
		seen = append(seen, p.OS+"/"+p.Architecture)
	}
	if pick == nil {
		if len(idx.Manifests) == 0 {
			return m, errors.New("index lists no manifests")
		}
		return m, fmt.Errorf("no linux/amd64 manifest in the index (found %s)", strings.Join(seen, ", "))
	}
	switch pick.MediaType {
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		var sub ocispec.Index
		if err := readJSON(l, "", pick, &sub); err != nil {
			return m, err
		}
		return pickManifest(l, sub, depth+1)
	case ocispec.MediaTypeImageManifest, dockerManifest, "":
	default:
		return m, fmt.Errorf("manifest %s: unsupported media type %q", pick.Digest, pick.MediaType)
	}
	if err := readJSON(l, "", pick, &m); err != nil {
		return m, err
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest && m.MediaType != dockerManifest {
		return m, fmt.Errorf("manifest %s: unsupported media type %q", pick.Digest, m.MediaType)
	}
	return m, nil
}

// applyLayer applies one layer blob, checking its size and digest.
func applyLayer(ctx context.Context, t *fstree.Tree, s *fstree.Store, l layout, d ocispec.Descriptor) error {
	br, err := openBlob(l, d)
	if err != nil {
		return err
	}
	defer br.Close()
	a, err := newApplier(t, s, ".", applyOpts{whiteouts: true})
	if err != nil {
		return err
	}
	applyErr := func() error {
		var plain io.Reader
		switch d.MediaType {
		case ocispec.MediaTypeImageLayer, dockerLayer,
			"application/vnd.oci.image.layer.nondistributable.v1.tar":
			plain = br
		case ocispec.MediaTypeImageLayerGzip, dockerLayerGzip,
			"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip":
			zr, err := gzip.NewReader(br)
			if err != nil {
				return fmt.Errorf("opening gzip stream: %w", err)
			}
			defer zr.Close()
			plain = zr
		case ocispec.MediaTypeImageLayerZstd,
			"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
			zr, err := zstd.NewReader(br, zstd.WithDecoderLowmem(true))
			if err != nil {
				return fmt.Errorf("opening zstd stream: %w", err)
			}
			defer zr.Close()
			plain = zr
		default:
			return fmt.Errorf("unsupported media type %q (expected tar, tar+gzip or tar+zstd)", d.MediaType)
		}
		return a.applyTar(ctx, plain)
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Read the rest of the blob, so that corruption reports as what it is
	// even when it first broke the decompressor or the tar reader.
	if err := br.verify(); err != nil {
		return err
	}
	return applyErr
}

// layout opens the files of an image layout by their slash path.
type layout interface {
	open(name string) (io.ReadCloser, error)
}

// dirLayout is an image layout directory.
type dirLayout string

func (d dirLayout) open(name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
}

// tarLayout is an image layout inside a plain tar archive: members are
// read in place, through an index of their offsets.
type tarLayout struct {
	f       *os.File
	members map[string][2]int64 // name -> offset, size
}

func openTarLayout(p string) (*tarLayout, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	tl := &tarLayout{f: f, members: map[string][2]int64{}}
	or := &offsetReader{f: f}
	tr := tar.NewReader(or)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading image archive (expected a plain tar of an OCI layout): %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimLeft(hdr.Name, "/"))
		// After Next, the archive is positioned at the member's data.
		tl.members[name] = [2]int64{or.off, hdr.Size}
	}
	return tl, nil
}

func (tl *tarLayout) open(name string) (io.ReadCloser, error) {
	m, ok := tl.members[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
	}
	return io.NopCloser(io.NewSectionReader(tl.f, m[0], m[1])), nil
}

func (tl *tarLayout) Close() error { return tl.f.Close() }

// offsetReader tracks the position in f while archive/tar reads and seeks.
type offsetReader struct {
	f   *os.File
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.f.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *offsetReader) Seek(offset int64, whence int) (int64, error) {
	n, err := o.f.Seek(offset, whence)
	if err == nil {
		o.off = n
	}
	return n, err
}

// blobReader reads a blob and checks its size and digest.
type blobReader struct {
	rc   io.ReadCloser
	r    io.Reader // rc limited to one byte past the expected size
	h    hash.Hash
	n    int64
	desc ocispec.Descriptor
}

// openBlob opens the blob d names, after checking that its digest is a
// well-formed sha256 digest (which also keeps the path inside blobs/).
func openBlob(l layout, d ocispec.Descriptor) (*blobReader, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest: %w", err)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("digest algorithm %q, expected sha256", d.Digest.Algorithm())
	}
	if d.Size < 0 {
		return nil, fmt.Errorf("negative size %d", d.Size)
	}
	rc, err := l.open("blobs/sha256/" + d.Digest.Encoded())
	if err != nil {
		return nil, err
	}
	return &blobReader{rc: rc, r: io.LimitReader(rc, d.Size+1), h: sha256.New(), desc: d}, nil
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

// verify reads what is left of the blob and compares size and digest.
func (b *blobReader) verify() error {
	if _, err := io.Copy(io.Discard, b); err != nil {
		return err
	}
	if b.n > b.desc.Size {
		return fmt.Errorf("size mismatch: more than the %d bytes the descriptor says", b.desc.Size)
	}
	if b.n < b.desc.Size {
		return fmt.Errorf("size mismatch: %d bytes, descriptor says %d", b.n, b.desc.Size)
	}
	if got := "sha256:" + hex.EncodeToString(b.h.Sum(nil)); got != string(b.desc.Digest) {
		return fmt.Errorf("digest mismatch: content hashes to %s (corrupted or wrong blob)", got)
	}
	return nil
}

func (b *blobReader) Close() error { return b.rc.Close() }

// readJSON decodes a small JSON document: the layout file name when d is
// nil, else the blob d (size and digest checked).
func readJSON(l layout, name string, d *ocispec.Descriptor, v any) error {
	var r io.Reader
	if d == nil {
		rc, err := l.open(name)
		if err != nil {
			return err
		}
		defer rc.Close()
		r = io.LimitReader(rc, maxMetadata)
	} else {
		if d.Size > maxMetadata {
			return fmt.Errorf("blob %s: %d bytes, more than the %d a manifest may have", d.Digest, d.Size, maxMetadata)
		}
		br, err := openBlob(l, *d)
		if err != nil {
			return fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		defer br.Close()
		var buf strings.Builder
		if _, err := io.Copy(&buf, br); err != nil {
			return fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		if err := br.verify(); err != nil {
			return fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		r = strings.NewReader(buf.String())
		name = "blob " + string(d.Digest)
	}
	if err := json.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("%s: invalid JSON: %w", name, err)
	}
	return nil
}

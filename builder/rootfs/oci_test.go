package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociImage builds an OCI image layout by hand in a test directory.
type ociImage struct {
	t   *testing.T
	dir string
}

func newOCIImage(t *testing.T) *ociImage {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := &ociImage{t: t, dir: dir}
	o.writeFile(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return o
}

func (o *ociImage) writeFile(name string, data []byte) {
	o.t.Helper()
	if err := os.WriteFile(filepath.Join(o.dir, name), data, 0o644); err != nil {
		o.t.Fatal(err)
	}
}

// blob stores data and returns its descriptor.
func (o *ociImage) blob(mediaType string, data []byte) ocispec.Descriptor {
	o.t.Helper()
	sum := sha256.Sum256(data)
	o.writeFile(filepath.Join("blobs", "sha256", hex.EncodeToString(sum[:])), data)
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(len(data))}
}

func (o *ociImage) jsonBlob(mediaType string, v any) ocispec.Descriptor {
	o.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		o.t.Fatal(err)
	}
	return o.blob(mediaType, b)
}

// layer stores the entries as a layer compressed as mediaType says.
func (o *ociImage) layer(mediaType string, entries []entry) ocispec.Descriptor {
	o.t.Helper()
	data := makeTar(o.t, entries)
	var buf bytes.Buffer
	switch mediaType {
	case ocispec.MediaTypeImageLayerGzip:
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			o.t.Fatal(err)
		}
		data = buf.Bytes()
	case ocispec.MediaTypeImageLayerZstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			o.t.Fatal(err)
		}
		zw.Write(data)
		if err := zw.Close(); err != nil {
			o.t.Fatal(err)
		}
		data = buf.Bytes()
	}
	return o.blob(mediaType, data)
}

// manifest stores a manifest with a config for arch and the layers.
func (o *ociImage) manifest(arch string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	o.t.Helper()
	cfg := o.jsonBlob(ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		RootFS:   ocispec.RootFS{Type: "layers"},
	})
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers}
	m.SchemaVersion = 2
	d := o.jsonBlob(ocispec.MediaTypeImageManifest, m)
	d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
	return d
}

func (o *ociImage) index(manifests ...ocispec.Descriptor) ocispec.Index {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	return idx
}

func (o *ociImage) writeIndex(idx ocispec.Index) {
	o.t.Helper()
	b, err := json.Marshal(idx)
	if err != nil {
		o.t.Fatal(err)
	}
	o.writeFile("index.json", b)
}

// testImage is a three-layer linux/amd64 image (tar+gzip, tar+zstd, tar)
// listed after a linux/arm64 image in the index. It returns the layout and
// the amd64 layer descriptors.
func testImage(t *testing.T) (*ociImage, []ocispec.Descriptor) {
	o := newOCIImage(t)
	file := func(name, body string) entry { return entry{name: name, typ: tar.TypeReg, body: body, mtime: 1} }
	dir := func(name string, mtime int64) entry { return entry{name: name, typ: tar.TypeDir, mtime: mtime} }
	l1 := o.layer(ocispec.MediaTypeImageLayerGzip, []entry{
		dir("etc/", 1), file("etc/a", "A"), file("etc/b", "B"),
		dir("d/", 1), file("d/old1", "o1"), dir("d/sub/", 1), file("d/sub/old2", "o2"),
		dir("keep/", 1), file("keep/x", "X"),
	})
	l2 := o.layer(ocispec.MediaTypeImageLayerZstd, []entry{
		file("etc/.wh.a", ""),
		file("etc/c", "C"), file("etc/.wh.c", ""), // same layer: not hidden
		dir("d/", 5),
		file("d/new", "N"), // before the opaque marker, same layer: kept
		file("d/.wh..wh..opq", ""),
		file("d/sub2/new2", "N2"), // parent not in the layer as an entry
	})
	l3 := o.layer(ocispec.MediaTypeImageLayer, []entry{
		file("keep/.wh.x", ""), file("keep/y", "Y"), file("l3", "3"),
	})
	arm := o.manifest("arm64", o.layer(ocispec.MediaTypeImageLayer, []entry{file("arm64-marker", "arm")}))
	amd := o.manifest("amd64", l1, l2, l3)
	o.writeIndex(o.index(arm, amd))
	return o, []ocispec.Descriptor{l1, l2, l3}
}

var testImageWant = []string{
	`d drwxr-xr-x 0:0 5`,
	`d/new -rw-r--r-- 0:0 1 1 "N"`,
	`d/sub2 drwxr-xr-x 0:0 1`,
	`d/sub2/new2 -rw-r--r-- 0:0 1 2 "N2"`,
	`etc drwxr-xr-x 0:0 1`,
	`etc/b -rw-r--r-- 0:0 1 1 "B"`,
	`etc/c -rw-r--r-- 0:0 1 1 "C"`,
	`keep drwxr-xr-x 0:0 1`,
	`keep/y -rw-r--r-- 0:0 1 1 "Y"`,
	`l3 -rw-r--r-- 0:0 1 1 "3"`,
}

// tarLayoutOf archives the layout directory with the real tar.
func tarLayoutOf(t *testing.T, dir string) string {
	t.Helper()
	requireTool(t, "tar", "tar")
	out := filepath.Join(t.TempDir(), "image.tar")
	if b, err := exec.CommandContext(t.Context(), "tar", "-C", dir, "-cf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	return out
}

func TestAddOCI(t *testing.T) {
	blobPath := func(o *ociImage, d ocispec.Descriptor) string {
		return filepath.Join(o.dir, "blobs", "sha256", d.Digest.Encoded())
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T) string // returns the path to AddOCI
		want    []string
		wantErr string // substring; "" = success
	}{
		{
			name:  "layout directory",
			setup: func(t *testing.T) string { o, _ := testImage(t); return o.dir },
			want:  testImageWant,
		},
		{
			name:  "tar archive of the layout",
			setup: func(t *testing.T) string { o, _ := testImage(t); return tarLayoutOf(t, o.dir) },
			want:  testImageWant,
		},
		{
			name: "nested index",
			setup: func(t *testing.T) string {
				o, _ := testImage(t)
				b, err := os.ReadFile(filepath.Join(o.dir, "index.json"))
				if err != nil {
					t.Fatal(err)
				}
				inner := o.blob(ocispec.MediaTypeImageIndex, b)
				o.writeIndex(o.index(inner))
				return o.dir
			},
			want: testImageWant,
		},
		{
			name: "corrupted layer blob",
			setup: func(t *testing.T) string {
				o, layers := testImage(t)
				p := blobPath(o, layers[1])
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				o.writeFile(strings.TrimPrefix(p, o.dir+"/"), b)
				return o.dir
			},
			wantErr: "digest mismatch",
		},
		{
			name: "corrupted plain layer in a tar archive",
			setup: func(t *testing.T) string {
				o, layers := testImage(t)
				p := blobPath(o, layers[2])
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[520] ^= 0xff // inside the second member header
				o.writeFile(strings.TrimPrefix(p, o.dir+"/"), b)
				return tarLayoutOf(t, o.dir)
			},
			wantErr: "digest mismatch",
		},
		{
			name: "truncated layer blob",
			setup: func(t *testing.T) string {
				o, layers := testImage(t)
				p := blobPath(o, layers[0])
				if err := os.Truncate(p, layers[0].Size-10); err != nil {
					t.Fatal(err)
				}
				return o.dir
			},
			wantErr: "size mismatch: ",
		},
		{
			name: "missing blob",
			setup: func(t *testing.T) string {
				o, layers := testImage(t)
				os.Remove(blobPath(o, layers[2]))
				return o.dir
			},
			wantErr: "no such file or directory",
		},
		{
			name: "no oci-layout file",
			setup: func(t *testing.T) string {
				o, _ := testImage(t)
				os.Remove(filepath.Join(o.dir, ocispec.ImageLayoutFile))
				return o.dir
			},
			wantErr: "not an OCI image layout: no oci-layout file",
		},
		{
			name: "no linux/amd64 manifest",
			setup: func(t *testing.T) string {
				o := newOCIImage(t)
				arm := o.manifest("arm64", o.layer(ocispec.MediaTypeImageLayer, nil))
				o.writeIndex(o.index(arm))
				return o.dir
			},
			wantErr: "no linux/amd64 manifest in the index (found linux/arm64)",
		},
		{
			name: "unsupported layer media type",
			setup: func(t *testing.T) string {
				o := newOCIImage(t)
				l := o.blob("application/vnd.oci.image.layer.v1.tar+bzip2", []byte("x"))
				o.writeIndex(o.index(o.manifest("amd64", l)))
				return o.dir
			},
			wantErr: `unsupported media type "application/vnd.oci.image.layer.v1.tar+bzip2" (expected tar, tar+gzip or tar+zstd)`,
		},
		{
			name: "digest that is not sha256 hex",
			setup: func(t *testing.T) string {
				o := newOCIImage(t)
				m := o.manifest("amd64")
				m.Digest = "sha256:../../../../etc/passwd"
				o.writeIndex(o.index(m))
				return o.dir
			},
			wantErr: `blob sha256:../../../../etc/passwd: invalid digest: invalid checksum digest`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.setup(t)
			tr, s := newTreeStore(t)
			err := AddOCI(t.Context(), tr, s, p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AddOCI error = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans several lines: %q", err)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("AddOCI: %v", err)
			}
			if d := diffLines(describe(t, tr), tt.want); d != "" {
				t.Errorf("tree differs:%s", d)
			}
		})
	}
}

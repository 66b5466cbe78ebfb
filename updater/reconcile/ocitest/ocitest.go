// Package ocitest makes small OCI image archives (the layout `ctr import`
// and containerd's client.Import read) for tests: one uncompressed layer
// from a list of files, a config with a command, a manifest, index.json.
package ocitest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of the image's only layer: a regular file copied from
// HostPath or holding Data, or a symlink to Link, or a directory (Dir).
type File struct {
	Name     string // path in the image, without a leading slash
	HostPath string
	Data     []byte
	Link     string
	Dir      bool
	Mode     int64 // default 0755 for files from HostPath, 0644 for Data
}

// Image describes the archive to write.
type Image struct {
	Name  string // the ref name recorded in index.json (annotation), optional
	Files []File
	Cmd   []string
	Env   []string
}

// Blob is one blob of an image.
type Blob struct {
	MediaType string
	Digest    string
	Data      []byte
}

// Blobs builds the image: its layer, config and manifest blobs (the
// manifest last) and the manifest digest.
func Blobs(img Image) ([]Blob, string, error) {
	d, err := build(img)
	if err != nil {
		return nil, "", err
	}
	return []Blob{
		{v1.MediaTypeImageLayer, d.ldesc.Digest.String(), d.layer},
		{v1.MediaTypeImageConfig, d.cdesc.Digest.String(), d.cfgJSON},
		{v1.MediaTypeImageManifest, d.mdesc.Digest.String(), d.manJSON},
	}, d.mdesc.Digest.String(), nil
}

type built struct {
	layer, cfgJSON, manJSON, idxJSON []byte
	ldesc, cdesc, mdesc              v1.Descriptor
}

func build(img Image) (*built, error) {
	layer, err := layerTar(img.Files)
	if err != nil {
		return nil, err
	}
	ldesc := desc(v1.MediaTypeImageLayer, layer)
	cfg := v1.Image{
		Platform: v1.Platform{Architecture: "amd64", OS: "linux"},
		Config:   v1.ImageConfig{Cmd: img.Cmd, Env: append([]string{"PATH=/bin:/usr/bin:/sbin"}, img.Env...)},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{ldesc.Digest}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cdesc := desc(v1.MediaTypeImageConfig, cfgJSON)
	man := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cdesc, Layers: []v1.Descriptor{ldesc}}
	manJSON, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	mdesc := desc(v1.MediaTypeImageManifest, manJSON)
	idxDesc := mdesc
	idxDesc.Platform = &v1.Platform{Architecture: "amd64", OS: "linux"}
	if img.Name != "" {
		idxDesc.Annotations = map[string]string{v1.AnnotationRefName: img.Name}
	}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{idxDesc}}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}
	return &built{layer, cfgJSON, manJSON, idxJSON, ldesc, cdesc, mdesc}, nil
}

// Write writes the archive to path and returns the image's manifest
// digest ("sha256:…"): the value a workload manifest pins.
func Write(path string, img Image) (string, error) {
	b, err := build(img)
	if err != nil {
		return "", err
	}
	layer, cfgJSON, manJSON, idxJSON := b.layer, b.cfgJSON, b.manJSON, b.idxJSON
	ldesc, cdesc, mdesc := b.ldesc, b.cdesc, b.mdesc
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idxJSON},
		{blob(ldesc), layer},
		{blob(cdesc), cfgJSON},
		{blob(mdesc), manJSON},
	} {
		if err == nil {
			err = add(e.name, e.data)
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return mdesc.Digest.String(), nil
}

func blob(d v1.Descriptor) string { return "blobs/sha256/" + d.Digest.Encoded() }

func desc(mediaType string, data []byte) v1.Descriptor {
	sum := sha256.Sum256(data)
	return v1.Descriptor{MediaType: mediaType, Size: int64(len(data)), Digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))}
}

func layerTar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, ModTime: time.Unix(0, 0), Mode: f.Mode}
		var data []byte
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, f.Name+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.HostPath != "":
			in, err := os.Open(f.HostPath)
			if err != nil {
				return nil, err
			}
			data, err = io.ReadAll(in) // test images are a few MB
			in.Close()
			if err != nil {
				return nil, err
			}
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		default:
			data = f.Data
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if h.Typeflag == 0 {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if len(data) > 0 {
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Busybox is a layer with a static busybox at /bin/busybox and /bin/sh,
// plus the directories runc needs.
func Busybox(hostBusybox string) []File {
	return []File{
		{Name: "bin", Dir: true},
		{Name: "bin/busybox", HostPath: hostBusybox},
		{Name: "bin/sh", Link: "busybox"},
		{Name: "dev", Dir: true}, {Name: "proc", Dir: true}, {Name: "sys", Dir: true},
		{Name: "etc", Dir: true}, {Name: "tmp", Dir: true, Mode: 0o1777}, {Name: "data", Dir: true},
	}
}

package workloadsrc

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/plumb-os/plumb/format/workload"
	"io"
	"os"
	"slices"
)

// maxIndex bounds the index.json ArchiveImages reads.
const maxIndex = 1 << 20

// ArchiveImages lists the manifest digests that an OCI image archive's
// index.json names (top level). It streams the tar; only index.json is
// read into memory.
func ArchiveImages(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: expected an OCI image archive (tar with index.json), found no index.json", file)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: expected an OCI image archive (tar): %v", file, err)
		}
		if h.Name != "index.json" && h.Name != "./index.json" {
			continue
		}
		if h.Size > maxIndex {
			return nil, fmt.Errorf("%s: index.json is %d bytes, expected at most %d", file, h.Size, maxIndex)
		}
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, maxIndex)).Decode(&idx); err != nil {
			return nil, fmt.Errorf("%s: index.json: %v", file, err)
		}
		var out []string
		for _, m := range idx.Manifests {
			out = append(out, m.Digest)
		}
		return out, nil
	}
}

// CheckArchive checks that file's index.json names the image digest c pins.
func CheckArchive(c *workload.Container, file string) error {
	ds, err := ArchiveImages(file)
	if err != nil {
		return err
	}
	if !slices.Contains(ds, c.Digest()) {
		return fmt.Errorf("%s: holds images %v, not %s that container %s pins (image: %s)", file, ds, c.Digest(), c.Name, c.Image)
	}
	return nil
}

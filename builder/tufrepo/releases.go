package tufrepo

import (
	"cmp"
	"encoding/hex"
	"fmt"
	pathpkg "path"
	"slices"

	"github.com/plumb-os/plumb/format/release"
)

// Release is one published target with its facts.
type Release struct {
	Path  string        `json:"path"`
	Facts release.Facts `json:"facts"`
	// Length and SHA256 are the target file's; File is where it is served,
	// relative to the repository's base URL (consistent snapshots name
	// it by its sha256: targets/<dir>/<sha256>.<name>), for HTTP boot and
	// PXE configurations.
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
	File   string `json:"file"`
}

// Releases lists the published targets, by hardware, then version (oldest
// first), then path. A target whose custom field is not valid release
// facts is an error naming its path.
func (r *Repo) Releases() ([]Release, error) {
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	var out []Release
	for path, tf := range st.targets.Signed.Targets {
		if tf.Custom == nil {
			return nil, fmt.Errorf("target %s: no release facts", path)
		}
		f, err := release.Parse(*tf.Custom)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", path, err)
		}
		sum := hex.EncodeToString(tf.Hashes["sha256"])
		file := "targets/" + pathpkg.Join(pathpkg.Dir(path), sum+"."+pathpkg.Base(path))
		out = append(out, Release{Path: path, Facts: *f, Length: tf.Length, SHA256: sum, File: file})
	}
	slices.SortFunc(out, func(a, b Release) int {
		return cmp.Or(
			cmp.Compare(a.Facts.Hardware, b.Facts.Hardware),
			release.CompareVersions(a.Facts.Version, b.Facts.Version),
			cmp.Compare(a.Path, b.Path))
	})
	return out, nil
}

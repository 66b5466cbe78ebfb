package tufrepo

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/updater/release"
)

// Release is one published target with its facts.
type Release struct {
	Path   string        `json:"path"`
	Length int64         `json:"length"` // bytes of the target
	Facts  release.Facts `json:"facts"`
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
		out = append(out, Release{Path: path, Length: tf.Length, Facts: *f})
	}
	slices.SortFunc(out, func(a, b Release) int {
		return cmp.Or(
			cmp.Compare(a.Facts.Hardware, b.Facts.Hardware),
			recipe.CompareVersions(a.Facts.Version, b.Facts.Version),
			cmp.Compare(a.Path, b.Path))
	})
	return out, nil
}

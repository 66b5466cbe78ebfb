package release

// ImageInfoPath is where an image keeps its ImageInfo, relative to the root.
const ImageInfoPath = "etc/plumb/release.json"

// ImageInfo is /etc/plumb/release.json (ImageInfoPath), written by the
// builder into every root filesystem: plumb-init measures its version, the
// agent reads which release it runs.
type ImageInfo struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	Hardware      string `json:"hardware"`
	Channel       string `json:"channel"`
	KernelRelease string `json:"kernel_release,omitempty"`
}

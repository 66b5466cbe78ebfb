// Package buildinfo holds the version stamped into plumb and plumbd at link
// time (make sets it from git describe).
package buildinfo

// Version is the agent and tool version; -ldflags "-X
// github.com/plumb-os/plumb/internal/buildinfo.Version=…" replaces it.
var Version = "0.1.0-dev"

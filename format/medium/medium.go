// Package medium owns the layout of an update medium (a USB stick made by
// plumb export, read by plumbd): its filesystem label, the description
// file at its top, and where target files sit. The builder writes it, the
// agent reads it.
//
//	plumb-export.json                          ExportFile: informational, not signed
//	metadata/N.root.json, timestamp.json, N.snapshot.json, N.targets.json, …
//	targets/<dir>/<sha256>.<name>              each target, as on the server (consistent snapshots)
package medium

import (
	"path"
	"path/filepath"
)

// Label is the filesystem label of an update medium (11 characters: the
// longest a FAT label may be).
const Label = "PLUMBUPDATE"

// ExportFile describes the export for people; the device trusts only the
// TUF metadata.
const ExportFile = "plumb-export.json"

// TargetFile is where a medium rooted at dir keeps target's bytes.
func TargetFile(dir, target, sha256 string) string {
	return filepath.Join(dir, "targets", filepath.FromSlash(path.Dir(target)), sha256+"."+path.Base(target))
}

// Package release owns the release facts that travel in each TUF target's
// custom field: the publisher (plumb publish) writes them, the agent reads
// them to choose what to install. The format is specified in release.md.
package release

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
)

// Kinds of target.
const (
	KindFull      = "full"      // <hardware>/<version>/rootfs.sqfs
	KindDelta     = "delta"     // <hardware>/<version>/from-<old>.delta
	KindInstaller = "installer" // <hardware>/<version>/installer/{vmlinuz,initrd}
)

// Digest is a sha256 (lower-case hex) and a size in bytes.
type Digest struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Facts is the custom field of a release target.
type Facts struct {
	Kind          string `json:"kind"`
	Name          string `json:"name"` // recipe name
	Hardware      string `json:"hardware"`
	Version       string `json:"version"`
	Channel       string `json:"channel"`
	Rollout       int    `json:"rollout"` // percent of devices, 0..100
	KernelRelease string `json:"kernel_release,omitempty"`
	Cmdline       string `json:"cmdline,omitempty"` // the recipe's extra kernel command line

	// Reference values, for installing and for attestation.
	Rootfs Digest `json:"rootfs"` // the full image (for a delta: its result)
	Kernel Digest `json:"kernel"`
	Initrd Digest `json:"initrd"`

	// For KindDelta: the release it applies to.
	From       string `json:"from,omitempty"`
	BaseSHA256 string `json:"base_sha256,omitempty"`
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*(-[0-9A-Za-z.-]+)?$`)
)

// Parse decodes and validates a custom field. Unknown keys are allowed
// (newer publishers may add facts); wrong types and missing facts are not.
func Parse(custom []byte) (*Facts, error) {
	var f Facts
	if err := json.Unmarshal(custom, &f); err != nil {
		return nil, fmt.Errorf("release facts: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks the facts.
func (f *Facts) Validate() error {
	switch f.Kind {
	case KindFull, KindDelta, KindInstaller:
	default:
		return fmt.Errorf("release facts: kind: expected full, delta or installer, got %q", f.Kind)
	}
	if !nameRE.MatchString(f.Hardware) {
		return fmt.Errorf("release facts: hardware: expected a name like \"qemu-x86_64\", got %q", f.Hardware)
	}
	if !versionRE.MatchString(f.Version) {
		return fmt.Errorf("release facts: version: expected a version like \"1.2.3\", got %q", f.Version)
	}
	if f.Channel == "" {
		return fmt.Errorf("release facts: channel: expected a name, got nothing")
	}
	if f.Rollout < 0 || f.Rollout > 100 {
		return fmt.Errorf("release facts: rollout: expected a percentage 0..100, got %d", f.Rollout)
	}
	if err := f.Rootfs.validate("rootfs"); err != nil {
		return err
	}
	if f.Kind == KindDelta {
		if !versionRE.MatchString(f.From) {
			return fmt.Errorf("release facts: from: expected the base version of the delta, got %q", f.From)
		}
		if !isSHA256(f.BaseSHA256) {
			return fmt.Errorf("release facts: base_sha256: expected 64 hex digits, got %q", f.BaseSHA256)
		}
	}
	return nil
}

func (d Digest) validate(field string) error {
	if !isSHA256(d.SHA256) {
		return fmt.Errorf("release facts: %s.sha256: expected 64 hex digits, got %q", field, d.SHA256)
	}
	if d.Size <= 0 {
		return fmt.Errorf("release facts: %s.size: expected a positive size, got %d", field, d.Size)
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// TargetPath is where a full release lives in the repository.
func TargetPath(hardware, version string) string {
	return hardware + "/" + version + "/rootfs.sqfs"
}

// DeltaPath is where a delta from old to version lives.
func DeltaPath(hardware, version, old string) string {
	return hardware + "/" + version + "/from-" + old + ".delta"
}

// InstallerPath is where a release's installer file ("vmlinuz" or
// "initrd") lives; HTTP boot and PXE fetch them from there.
func InstallerPath(hardware, version, file string) string {
	return hardware + "/" + version + "/installer/" + file
}

// Package release owns the release facts that travel in each TUF target's
// custom field: the publisher (plumb publish) writes them, the agent reads
// them to choose what to install. The format is specified in release.md.
package release

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/plumb-os/plumb/format/verity"
)

// Kinds of target.
const (
	KindFull      = "full"      // <hardware>/<version>/rootfs.sqfs
	KindDelta     = "delta"     // <hardware>/<version>/from-<old>.delta
	KindInstaller = "installer" // <hardware>/<version>/installer/{vmlinuz,initrd}
	KindUKI       = "uki"       // <hardware>/<version>/uki-<slot>.efi (Secure Boot releases)
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

	// Measured are the reference values for attestation: what the
	// firmware, systemd-boot, the kernel's EFI stub and plumb-init measure
	// into the TPM when a device boots this release (docs/attestation.md).
	// Absent in facts published before attestation existed.
	Measured *Measured `json:"measured,omitempty"`

	// Approved, when set, is the operator's approval (approval.go).
	Approved *Approval `json:"approved,omitempty"`
	// Verity describes the dm-verity hash tree the device writes after the
	// image in its slot and checks before it arms a trial boot
	// (format/verity/FORMAT.md). Absent for releases built without
	// boot.verity.
	Verity *verity.Facts `json:"verity,omitempty"`
	// UKI lists, per slot, the signed Unified Kernel Image of releases
	// built with boot.secure_boot (target UKIPath): a device installs the
	// one of the slot it writes and boots it instead of kernel and initrd.
	UKI map[string]Digest `json:"uki,omitempty"`

	// For KindDelta: the release it applies to.
	From       string `json:"from,omitempty"`
	BaseSHA256 string `json:"base_sha256,omitempty"`

	// Rollout control: waves, pause, halt (rollout.go). Its keys sit at
	// the top level of the custom field.
	Control
}

// validName checks a hardware name: [a-z0-9][a-z0-9._-]*, at most 64 bytes.
func validName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[0] == '_' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && (c < 'a' || c > 'z') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

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
	case KindFull, KindDelta, KindInstaller, KindUKI:
	default:
		return fmt.Errorf("release facts: kind: expected full, delta, installer or uki, got %q", f.Kind)
	}
	if !validName(f.Hardware) {
		return fmt.Errorf("release facts: hardware: expected a name like \"qemu-x86_64\", got %q", f.Hardware)
	}
	if !ValidVersion(f.Version) {
		return fmt.Errorf("release facts: version: expected a version like \"1.2.3\" or \"1.2.0-rc.1+build.7\", got %q", f.Version)
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
	if err := f.Control.Validate(); err != nil {
		return err
	}
	if f.Measured != nil {
		if err := f.Measured.Validate(); err != nil {
			return err
		}
	}
	if f.Approved != nil {
		if err := f.Approved.Validate(); err != nil {
			return err
		}
	}
	if f.Verity != nil {
		if _, err := f.VerityParams(); err != nil {
			return err
		}
	}
	for slot, d := range f.UKI {
		if slot != "a" && slot != "b" {
			return fmt.Errorf("release facts: uki: expected slots a and b, got %q", slot)
		}
		if err := d.validate("uki." + slot); err != nil {
			return err
		}
	}
	if f.UKI != nil && f.Verity == nil {
		return fmt.Errorf("release facts: uki: expected verity facts with it (a signed kernel mounts only a verified root)")
	}
	if f.Kind == KindDelta {
		if !ValidVersion(f.From) {
			return fmt.Errorf("release facts: from: expected the base version of the delta, got %q", f.From)
		}
		if !isSHA256(f.BaseSHA256) {
			return fmt.Errorf("release facts: base_sha256: expected 64 hex digits, got %q", f.BaseSHA256)
		}
	}
	return nil
}

// Measured holds the digests a boot of the release extends into the TPM's
// sha256 PCRs, as lower-case hex.
type Measured struct {
	// Bootloader and Kernel are the PE/Authenticode sha256 of systemd-boot
	// (EFI/BOOT/BOOTX64.EFI) and of the kernel (vmlinuz), which UEFI
	// measures into PCR 4 as EV_EFI_BOOT_SERVICES_APPLICATION events.
	Bootloader string `json:"bootloader_authenticode"`
	Kernel     string `json:"kernel_authenticode"`
	// Initrd is the sha256 of the initrd the kernel's EFI stub measures
	// into PCR 9 (EV_EVENT_TAG "Linux initrd"); the same as facts.initrd.
	Initrd string `json:"initrd_sha256"`
	// Cmdline is, per slot ("a", "b"), the load options systemd-boot
	// passes to the kernel and measures into PCR 12 (EV_IPL, UTF-16LE with
	// its terminating NUL; the EFI stub measures the same bytes into PCR 9
	// as "LOADED_IMAGE::LoadOptions").
	Cmdline map[string]string `json:"cmdline"`
	// PCR15 is the value plumb-init leaves in PCR 15: the rootfs sha256
	// extended, then sha256 of the version (updater/earlyinit, measure.go).
	PCR15 string `json:"pcr15"`
	// UKI is, per slot, the PE/Authenticode sha256 of the slot's signed
	// Unified Kernel Image (releases built with boot.secure_boot): UEFI
	// measures it into PCR 4 where a kernel/initrd boot has the kernel.
	// For such releases Cmdline holds each UKI's .cmdline section, which
	// systemd's stub measures into PCR 11.
	UKI map[string]string `json:"uki_authenticode,omitempty"`
	// SecureBoot is the Secure Boot state PCR 7 must show when a device
	// boots the release (releases built with boot.secure_boot).
	SecureBoot *SecureBootState `json:"secure_boot,omitempty"`
}

// SecureBootState is what the firmware's PCR 7 events must say:
// SecureBoot enabled, the owner's certificate in db and, through
// EV_EFI_VARIABLE_AUTHORITY, used to verify the boot chain; PK and KEK
// the owner's when given.
type SecureBootState struct {
	// DB is the certificate the release's boot chain is signed with.
	DB Cert `json:"db"`
	// PK and KEK are the owner's platform and key-exchange certificates,
	// when the recipe names them.
	PK  *Cert `json:"pk,omitempty"`
	KEK *Cert `json:"kek,omitempty"`
}

// Cert identifies an X.509 certificate: the sha256 of its DER encoding,
// and its subject for people.
type Cert struct {
	SHA256  string `json:"sha256"`
	Subject string `json:"subject"`
}

// Validate checks the Secure Boot reference values.
func (s *SecureBootState) Validate() error {
	for _, c := range []struct {
		field string
		c     *Cert
	}{{"db", &s.DB}, {"pk", s.PK}, {"kek", s.KEK}} {
		if c.c != nil && !isSHA256(c.c.SHA256) {
			return fmt.Errorf("release facts: measured.secure_boot.%s.sha256: expected 64 hex digits, got %q", c.field, c.c.SHA256)
		}
	}
	return nil
}

// Validate checks the reference values.
func (m *Measured) Validate() error {
	for _, c := range []struct{ field, v string }{
		{"bootloader_authenticode", m.Bootloader}, {"kernel_authenticode", m.Kernel},
		{"initrd_sha256", m.Initrd}, {"pcr15", m.PCR15},
	} {
		if !isSHA256(c.v) {
			return fmt.Errorf("release facts: measured.%s: expected 64 hex digits, got %q", c.field, c.v)
		}
	}
	if len(m.Cmdline) == 0 {
		return fmt.Errorf("release facts: measured.cmdline: expected the command line of each slot, got none")
	}
	for slot, c := range m.Cmdline {
		if slot == "" || c == "" {
			return fmt.Errorf("release facts: measured.cmdline: expected a slot name and its command line, got %q: %q", slot, c)
		}
	}
	for slot, d := range m.UKI {
		if slot != "a" && slot != "b" || !isSHA256(d) {
			return fmt.Errorf("release facts: measured.uki_authenticode: expected slots a and b with 64 hex digits each, got %q: %q", slot, d)
		}
	}
	if m.SecureBoot != nil {
		return m.SecureBoot.Validate()
	}
	return nil
}

// VerityParams returns the verity parameters of the facts (nil without
// them), checked against the image size.
func (f *Facts) VerityParams() (*verity.Params, error) {
	if f.Verity == nil {
		return nil, nil
	}
	p, err := f.Verity.Params("release facts: verity")
	if err != nil {
		return nil, err
	}
	if want := verity.DataBlocksFor(f.Rootfs.Size); p.DataBlocks != want {
		return nil, fmt.Errorf("release facts: verity.data_blocks: expected %d for a rootfs of %d bytes, got %d", want, f.Rootfs.Size, p.DataBlocks)
	}
	return p, nil
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

// UKIPath is where a Secure Boot release's signed UKI for slot lives.
func UKIPath(hardware, version, slot string) string {
	return hardware + "/" + version + "/uki-" + slot + ".efi"
}

// InstallerPath is where a release's installer file ("vmlinuz" or
// "initrd") lives; HTTP boot and PXE fetch them from there.
func InstallerPath(hardware, version, file string) string {
	return hardware + "/" + version + "/installer/" + file
}

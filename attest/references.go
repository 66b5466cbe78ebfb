package attest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
)

// References are the digests a boot of one release should measure, as the
// builder published them in the release's TUF facts (lower-case hex). An
// empty field makes its check "not checkable".
type References struct {
	// Version is the release version (plumb.release in PCR 15).
	Version string `json:"version"`
	// Rootfs is the sha256 of the release's root filesystem image
	// (plumb.rootfs in PCR 15).
	Rootfs string `json:"rootfs_sha256"`
	// Bootloader and Kernel are PE/Authenticode sha256 digests of
	// systemd-boot and the kernel: UEFI measures them into PCR 4 as
	// EV_EFI_BOOT_SERVICES_APPLICATION events.
	Bootloader string `json:"bootloader_authenticode"`
	Kernel     string `json:"kernel_authenticode"`
	// Initrd is the sha256 of the initrd the kernel's EFI stub measures
	// into PCR 9 (EV_EVENT_TAG "Linux initrd").
	Initrd string `json:"initrd_sha256"`
	// Cmdline holds the kernel command line of each slot ("a", "b") as
	// systemd-boot measures it into PCR 12 (EV_IPL, UTF-16LE).
	Cmdline map[string]string `json:"cmdline"`
	// PCR15 is the value plumb-init leaves in PCR 15; "" to skip.
	PCR15 string `json:"pcr15,omitempty"`
	// UKI holds, per slot, the PE/Authenticode sha256 of the slot's signed
	// Unified Kernel Image. When set the boot is a UKI boot: UEFI measures
	// the UKI into PCR 4 after systemd-boot, and Cmdline holds each UKI's
	// .cmdline section, which systemd's stub measures into PCR 11.
	UKI map[string]string `json:"uki_authenticode,omitempty"`
	// SecureBoot is the Secure Boot state PCR 7 must show; nil: the
	// release does not require Secure Boot.
	SecureBoot *SecureBootReference `json:"secure_boot,omitempty"`
	// VerityRoot is the dm-verity root hash of the release's root image
	// (release facts verity.root_hash), which the measured kernel command
	// line must carry as plumb.verity.root; "": the release has no verity.
	VerityRoot string `json:"verity_root_hash,omitempty"`
}

// SecureBootReference is the Secure Boot state a release requires: the
// owner's db certificate (which signed the boot chain) and, when
// published, the owner's PK and KEK.
type SecureBootReference struct {
	DB  CertReference  `json:"db"`
	PK  *CertReference `json:"pk,omitempty"`
	KEK *CertReference `json:"kek,omitempty"`
}

// CertReference names a certificate by the sha256 of its DER encoding.
type CertReference struct {
	SHA256  string `json:"sha256"`
	Subject string `json:"subject"`
}

// releaseFacts is the part of a release's TUF custom facts (package
// updater/release, release.md) the references come from. It is decoded
// from JSON here so attest does not depend on the publisher's Go types.
type releaseFacts struct {
	Version string `json:"version"`
	Rootfs  struct {
		SHA256 string `json:"sha256"`
	} `json:"rootfs"`
	Initrd struct {
		SHA256 string `json:"sha256"`
	} `json:"initrd"`
	Measured *struct {
		Bootloader string               `json:"bootloader_authenticode"`
		Kernel     string               `json:"kernel_authenticode"`
		Initrd     string               `json:"initrd_sha256"`
		Cmdline    map[string]string    `json:"cmdline"`
		PCR15      string               `json:"pcr15"`
		UKI        map[string]string    `json:"uki_authenticode"`
		SecureBoot *SecureBootReference `json:"secure_boot"`
	} `json:"measured"`
	Verity *struct {
		RootHash string `json:"root_hash"`
	} `json:"verity"`
}

// ReferencesFromFacts builds References from a release target's custom
// facts (the JSON object in targets.json). Facts published before
// attestation existed have no "measured" object: their boot-chain fields
// stay empty and those checks are "not checkable".
func ReferencesFromFacts(custom []byte) (References, error) {
	var f releaseFacts
	if err := json.Unmarshal(custom, &f); err != nil {
		return References{}, fmt.Errorf("release facts: %w", err)
	}
	r := References{Version: f.Version, Rootfs: f.Rootfs.SHA256, Initrd: f.Initrd.SHA256}
	if m := f.Measured; m != nil {
		r.Bootloader, r.Kernel, r.Cmdline, r.PCR15 = m.Bootloader, m.Kernel, m.Cmdline, m.PCR15
		r.UKI, r.SecureBoot = m.UKI, m.SecureBoot
		if m.Initrd != "" {
			r.Initrd = m.Initrd
		}
	}
	if f.Verity != nil {
		r.VerityRoot = f.Verity.RootHash
	}
	return r, r.Validate()
}

// Validate checks that every digest given is 64 lower-case hex digits.
func (r References) Validate() error {
	for _, c := range []struct{ field, v string }{
		{"rootfs_sha256", r.Rootfs}, {"bootloader_authenticode", r.Bootloader},
		{"kernel_authenticode", r.Kernel}, {"initrd_sha256", r.Initrd}, {"pcr15", r.PCR15},
		{"verity_root_hash", r.VerityRoot},
	} {
		if c.v != "" && !sha256HexRE.MatchString(c.v) {
			return fmt.Errorf("references: %s: expected 64 lower-case hex digits, got %q", c.field, c.v)
		}
	}
	for slot, d := range r.UKI {
		if !sha256HexRE.MatchString(d) {
			return fmt.Errorf("references: uki_authenticode.%s: expected 64 lower-case hex digits, got %q", slot, d)
		}
	}
	if sb := r.SecureBoot; sb != nil {
		for _, c := range []struct {
			field string
			c     *CertReference
		}{{"db", &sb.DB}, {"pk", sb.PK}, {"kek", sb.KEK}} {
			if c.c != nil && !sha256HexRE.MatchString(c.c.SHA256) {
				return fmt.Errorf("references: secure_boot.%s.sha256: expected 64 lower-case hex digits, got %q", c.field, c.c.SHA256)
			}
		}
	}
	return nil
}

// slots returns the slot names of r.Cmdline, sorted.
func (r References) slots() []string {
	s := make([]string, 0, len(r.Cmdline))
	for k := range r.Cmdline {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

var sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// InstallerPath is where the builder puts the installer's configuration in
// the installer initramfs; the agent configuration, trusted root and CA sit
// at their usual paths beside it.
const InstallerPath = "/etc/plumb/installer.json"

// Installer describes the disk `plumbd install` writes: the same layout as
// the build's disk.img (so the partition UUIDs, and root=PARTUUID= in boot
// entries, are the ones every release of the recipe expects), the ESP's
// bootloader, and the empty data filesystem, made by the builder with
// mke2fs and shipped zstd-compressed (the installer has no mke2fs).
type Installer struct {
	// Layout of disklayout.Layout, in bytes; Seed derives every GUID.
	ESPSize  int64  `json:"esp_size"`
	RootSize int64  `json:"root_size"`
	DataSize int64  `json:"data_size"`
	Seed     string `json:"seed"`
	// ModTime is every time on the ESP (seconds since the Unix epoch).
	ModTime int64 `json:"mod_time"`
	// Bootloader is the path of systemd-boot's EFI binary, put on the ESP
	// as /EFI/BOOT/BOOTX64.EFI.
	Bootloader string `json:"bootloader"`
	// Data is the zstd-compressed image of the data partition's
	// filesystem; DataSHA256 and DataSize describe it uncompressed.
	Data       string `json:"data"`
	DataSHA256 string `json:"data_sha256"`
	DataBytes  int64  `json:"data_bytes"`
	// SecureBootDB is the sha256 of the db certificate the installer's own
	// boot chain (systemd-boot and its UKI) is signed with, for builds with
	// boot.secure_boot. Booted under Secure Boot, the installer's PCR 7 is
	// the one the installed release's chain gives only when that release
	// is signed with the same certificate: the installer seals /data only
	// then. Absent: the installer boots kernel and initrd, unsigned.
	SecureBootDB string `json:"secure_boot_db,omitempty"`
}

// ParseInstaller decodes and validates an installer configuration; unknown
// keys are errors.
func ParseInstaller(data []byte) (*Installer, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Installer
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("installer config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the configuration.
func (c *Installer) Validate() error {
	switch {
	case c.ESPSize <= 0 || c.RootSize <= 0 || c.DataSize <= 0:
		return fmt.Errorf("installer config: esp_size, root_size, data_size: expected positive sizes, got %d, %d, %d", c.ESPSize, c.RootSize, c.DataSize)
	case c.Seed == "":
		return fmt.Errorf("installer config: seed: expected the layout seed, got nothing")
	case c.Bootloader == "" || c.Data == "":
		return fmt.Errorf("installer config: bootloader, data: expected file paths, got %q and %q", c.Bootloader, c.Data)
	case c.DataBytes != c.DataSize:
		return fmt.Errorf("installer config: data_bytes: expected the data partition's size %d, got %d", c.DataSize, c.DataBytes)
	}
	if b, err := hex.DecodeString(c.DataSHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("installer config: data_sha256: expected 64 hex digits, got %q", c.DataSHA256)
	}
	if b, err := hex.DecodeString(c.SecureBootDB); c.SecureBootDB != "" && (err != nil || len(b) != 32) {
		return fmt.Errorf("installer config: secure_boot_db: expected 64 hex digits (the db certificate's sha256), got %q", c.SecureBootDB)
	}
	return nil
}

package bootrecord

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/format/disklayout"
)

// BootInfoPath is where the early init leaves BootInfo for the agent, in
// the booted root (a tmpfs, so it describes this boot only).
const BootInfoPath = "/run/plumb/boot.json"

// BootInfo is what the early init found while booting, as JSON at
// BootInfoPath. The early init writes it; the agent reads it with
// ReadBootInfo. Fields are only ever added.
type BootInfo struct {
	// Slot is the root partition's slot letter ("a", "b"): the suffix of
	// its GPT name "plumb-root-<slot>".
	Slot disklayout.Slot `json:"slot"`
	// CmdlineSlot is plumb.slot= from the kernel command line, if given.
	CmdlineSlot string `json:"cmdline_slot,omitempty"`
	// RootPARTUUID is the root partition's unique GUID, lower case.
	RootPARTUUID string `json:"root_partuuid"`
	// RootDevice and DataDevice are device nodes ("/dev/vda2");
	// DataDevice is empty when the disk has no plumb-data partition.
	RootDevice string `json:"root_device"`
	DataDevice string `json:"data_device,omitempty"`
	// DataMounted tells whether DataDevice is mounted at /data.
	DataMounted bool `json:"data_mounted"`
	// DataError is why /data is not mounted, if it is not.
	DataError string `json:"data_error,omitempty"`
	// DataEncryption is "luks2-tpm" when the command line asks for a data
	// partition sealed to the TPM (format/datapart); DataDevice is then
	// the unlocked device (/dev/mapper/plumb-data), or the partition when
	// it stayed sealed (DataError says why, "data partition sealed: …",
	// and /data is an empty tmpfs). DataUnlockMillis is the time the
	// unseal and the mapping took (the first boot: creating the volume).
	DataEncryption   string `json:"data_encryption,omitempty"`
	DataUnlockMillis int64  `json:"data_unlock_ms,omitempty"`
	// Measured tells whether plumb-init extended PCR 15 with the root
	// image and the release version and logged it to MeasurementsPath;
	// MeasureError says why not ("no TPM ..."). RootfsSHA256 and
	// RootfsSize describe the image it hashed.
	Measured     bool   `json:"measured"`
	MeasureError string `json:"measure_error,omitempty"`
	RootfsSHA256 string `json:"rootfs_sha256,omitempty"`
	RootfsSize   int64  `json:"rootfs_size,omitempty"`
	// VerityRootHash is the dm-verity root hash the root was mapped with
	// (plumb.verity.root on the command line), empty when the root is
	// mounted without verity; VerityDevice is the verified device.
	VerityRootHash string `json:"verity_root_hash,omitempty"`
	VerityDevice   string `json:"verity_device,omitempty"`
	// InitMillis is the time the early init took, from its start to
	// handing over to the real init; UptimeMillis is the kernel's uptime
	// at that point.
	InitMillis   int64 `json:"init_ms"`
	UptimeMillis int64 `json:"uptime_ms"`
}

// ReadBootInfo reads the BootInfo at path (BootInfoPath on a device).
func ReadBootInfo(path string) (BootInfo, error) {
	var bi BootInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return bi, fmt.Errorf("reading boot info: %w", err)
	}
	if err := json.Unmarshal(b, &bi); err != nil {
		return bi, fmt.Errorf("reading boot info %s: %w", path, err)
	}
	return bi, nil
}

// WriteBootInfo writes bi as JSON to path, creating its directory.
func WriteBootInfo(path string, bi BootInfo) error {
	b, err := json.Marshal(bi)
	if err != nil {
		return fmt.Errorf("encoding boot info: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing boot info: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing boot info: %w", err)
	}
	return nil
}

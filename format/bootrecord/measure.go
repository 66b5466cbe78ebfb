package bootrecord

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Plumb's own measurement of the booted release (docs/attestation.md).
//
// Before it mounts the root, plumb-init extends PCR 15 with the sha256 of
// the slot's root filesystem image ("plumb.rootfs"), and before it hands
// over to the root's init, with the sha256 of the release version read
// from the image's /etc/plumb/release.json ("plumb.release"). PCR 15 is
// free for the OS: neither the firmware, systemd-boot nor the kernel's EFI
// stub extend it, it is reset at boot, and a quote over PCRs 0-15 covers
// it. The UEFI event log ends when the firmware exits, so plumb-init keeps
// its own log at MeasurementsPath for the verifier to replay PCR 15.
const (
	// MeasurePCR is the PCR plumb-init extends.
	MeasurePCR = 15
	// MeasurementsPath lists plumb-init's extends, in order, as JSON.
	MeasurementsPath = "/run/plumb/measurements.json"
	// Event types of the two extends.
	EventRootfs  = "plumb.rootfs"
	EventRelease = "plumb.release"
	// EventUnknown is not an extend: plumb-init could not tell whether the
	// extend of SHA256 reached the TPM (the command failed and PCR 15 could
	// not be read back, or held a value the log does not explain). Data
	// says which measurement and why. Nothing is extended after it, and
	// the verifier fails the log with that reason.
	EventUnknown = "plumb.unknown"
	// maxUnknownData bounds an EventUnknown's Data (the evidence allows
	// 1 KiB).
	maxUnknownData = 1000
)

// Measurement is one extend of a sha256 PCR.
type Measurement struct {
	PCR    int    `json:"pcr"`
	SHA256 string `json:"sha256"` // the digest extended, hex
	Type   string `json:"type"`   // EventRootfs, EventRelease
	Data   string `json:"data"`   // what was measured: the image's sha256 hex, the version
}

// RootfsMeasurement is the extend for a root filesystem image whose sha256
// is sum (hex).
func RootfsMeasurement(sum string) Measurement {
	return Measurement{PCR: MeasurePCR, SHA256: sum, Type: EventRootfs, Data: sum}
}

// ReleaseMeasurement is the extend for a release version.
func ReleaseMeasurement(version string) Measurement {
	d := sha256.Sum256([]byte(version))
	return Measurement{PCR: MeasurePCR, SHA256: hex.EncodeToString(d[:]), Type: EventRelease, Data: version}
}

// UnknownMeasurement is the EventUnknown entry for a measurement whose
// extend may or may not have reached the TPM, for the reason why.
func UnknownMeasurement(m Measurement, why string) Measurement {
	data := m.Type + " " + m.Data + ": " + why
	if len(data) > maxUnknownData {
		data = strings.ToValidUTF8(data[:maxUnknownData], "")
	}
	return Measurement{PCR: m.PCR, SHA256: m.SHA256, Type: EventUnknown, Data: data}
}

// ReplayPCR returns the value a sha256 PCR holds after the extends in ms
// that name it, starting from zeros. EventUnknown entries are not extends
// and are skipped.
func ReplayPCR(ms []Measurement, pcr int) ([]byte, error) {
	v := make([]byte, sha256.Size)
	for i, m := range ms {
		if m.PCR != pcr || m.Type == EventUnknown {
			continue
		}
		d, err := hex.DecodeString(m.SHA256)
		if err != nil || len(d) != sha256.Size {
			return nil, fmt.Errorf("measurement %d: sha256: expected 64 hex digits, got %q", i, m.SHA256)
		}
		h := sha256.New()
		h.Write(v)
		h.Write(d)
		v = h.Sum(nil)
	}
	return v, nil
}

// ExpectedPCR15 is the value plumb-init leaves in PCR 15 when it boots the
// image with sha256 rootfsSHA256 (hex) and the given release version.
func ExpectedPCR15(rootfsSHA256, version string) (string, error) {
	v, err := ReplayPCR([]Measurement{RootfsMeasurement(rootfsSHA256), ReleaseMeasurement(version)}, MeasurePCR)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(v), nil
}

// ReadMeasurements reads the list plumb-init wrote (at MeasurementsPath on
// a device).
func ReadMeasurements(path string) ([]Measurement, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading measurements: %w", err)
	}
	var ms []Measurement
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("reading measurements %s: %w", path, err)
	}
	return ms, nil
}

// WriteMeasurements writes the log plumb-init keeps (MeasurementsPath on a
// device), creating its directory.
func WriteMeasurements(path string, ms []Measurement) error {
	b, err := json.MarshalIndent(ms, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing measurements: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing measurements: %w", err)
	}
	return nil
}

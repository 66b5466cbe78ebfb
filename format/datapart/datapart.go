// Package datapart is the contract for an encrypted data partition between
// the builder, which writes it unprovisioned, and plumb-init, which turns
// it into a LUKS2 volume sealed to the device's TPM on the first boot
// (docs/verified-boot.md, "Data sealed to the TPM").
//
// An unprovisioned partition holds, at offset 0, a Marker block (Magic and
// a JSON description), and at ImageOffset the empty ext4 filesystem for
// /data, gzip-compressed (the standard library's, so that plumb-init
// stays small). Provisioning writes the filesystem encrypted into
// the LUKS2 data segment at SegmentOffset and the LUKS2 headers last, over
// the marker: a provisioning cut short by a power loss starts again.
package datapart

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Kernel command line: CmdlineKey=Sealed in a (signed) UKI's command line
// asks plumb-init for a sealed data partition.
const (
	CmdlineKey = "plumb.data"
	Sealed     = "luks2-tpm"
)

// Layout of the partition.
const (
	// MarkerSize is the size of the marker block at offset 0.
	MarkerSize = 4096
	// ImageOffset is where the compressed filesystem starts, inside what
	// becomes the LUKS2 keyslots area (unused by its one keyslot).
	ImageOffset = 512 << 10
	// SegmentOffset is the LUKS2 data segment's offset: the filesystem is
	// the partition's size minus SegmentOffset.
	SegmentOffset = 1 << 20
	// MaxImage caps the compressed filesystem.
	MaxImage = SegmentOffset - ImageOffset
)

// Magic starts an unprovisioned partition.
const Magic = "PLUMB-DATA-UNPROVISIONED\n"

// Marker describes the compressed filesystem of an unprovisioned partition.
type Marker struct {
	// Compressed is the length of the gzip stream at ImageOffset, SHA256
	// its sha256 (hex); Size is the decompressed filesystem's size.
	Compressed int64  `json:"compressed"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
}

// Encode returns the MarkerSize block for m.
func (m Marker) Encode() ([]byte, error) {
	j, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	b := make([]byte, MarkerSize)
	if len(Magic)+len(j)+1 > len(b) {
		return nil, fmt.Errorf("data partition marker: %d bytes, expected at most %d", len(j), MarkerSize-len(Magic)-1)
	}
	copy(b, Magic)
	copy(b[len(Magic):], append(j, '\n'))
	return b, nil
}

// IsMarker tells whether block (the partition's first bytes) starts with Magic.
func IsMarker(block []byte) bool { return bytes.HasPrefix(block, []byte(Magic)) }

// DecodeMarker reads the marker block of an unprovisioned partition of
// partSize bytes and checks it against the layout.
func DecodeMarker(block []byte, partSize int64) (Marker, error) {
	var m Marker
	if !IsMarker(block) {
		return m, fmt.Errorf("data partition: expected the marker %q at offset 0", Magic[:len(Magic)-1])
	}
	rest := block[len(Magic):]
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i]
	}
	if err := json.Unmarshal(rest, &m); err != nil {
		return m, fmt.Errorf("data partition marker: %w", err)
	}
	if m.Compressed <= 0 || m.Compressed > MaxImage {
		return m, fmt.Errorf("data partition marker: compressed: expected 1..%d bytes, got %d", MaxImage, m.Compressed)
	}
	if len(m.SHA256) != 64 {
		return m, fmt.Errorf("data partition marker: sha256: expected 64 hex digits, got %q", m.SHA256)
	}
	if m.Size <= 0 || m.Size%4096 != 0 || m.Size > partSize-SegmentOffset {
		return m, fmt.Errorf("data partition marker: size: expected a multiple of 4096 up to %d (the partition less %d), got %d", partSize-SegmentOffset, SegmentOffset, m.Size)
	}
	return m, nil
}

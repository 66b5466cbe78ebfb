package slot

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/updater/release"
)

// ErrVerity: the hash tree computed from a written slot does not have the
// root hash of the release facts.
var ErrVerity = errors.New("verity root hash does not match the release facts")

// FormatVerity makes a slot that holds the release image (size bytes from
// offset 0) verifiable by dm-verity: it writes the hash tree after the
// image (format/verity/FORMAT.md) and checks that its root hash is the one
// of the facts, before any boot entry points at the slot. capacity is the
// slot's size in bytes. Releases without verity facts need nothing.
// In DryRun it only logs.
func (d *Device) FormatVerity(slot verity.ReadWriterAt, capacity, size int64, facts *release.Facts) error {
	want, err := facts.VerityParams()
	if err != nil || want == nil {
		return err
	}
	if d.DryRun {
		d.log().Info("dry run: not writing the verity tree", "root_hash", fmt.Sprintf("%x", want.RootHash))
		return nil
	}
	return FormatVerity(slot, capacity, size, want, d.log().Info)
}

// FormatVerity is Device.FormatVerity for a slot that is not a Device's
// (the installer's new disk). logf receives one line with the figures.
func FormatVerity(slot verity.ReadWriterAt, capacity, size int64, want *verity.Params, logf func(msg string, args ...any)) error {
	if need := verity.SlotSize(size); need > capacity {
		return fmt.Errorf("verity: the image of %d bytes and its hash tree need %d bytes, the slot holds %d", size, need, capacity)
	}
	start := time.Now()
	got, err := verity.Format(slot, size, want.Salt)
	if err != nil {
		return err
	}
	if !bytes.Equal(got.RootHash, want.RootHash) || got.HashOffset != want.HashOffset || got.DataBlocks != want.DataBlocks {
		return fmt.Errorf("verity: the slot gives root hash %x (%d blocks), the release facts say %x (%d blocks): %w", got.RootHash, got.DataBlocks, want.RootHash, want.DataBlocks, ErrVerity)
	}
	if logf != nil {
		logf("verity tree written and checked", "root_hash", fmt.Sprintf("%x", got.RootHash), "data_blocks", got.DataBlocks,
			"hash_bytes", verity.HashAreaSize(got.DataBlocks), "seconds", time.Since(start).Seconds())
	}
	return nil
}

package slot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/iox"
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

// InstallUKI makes the inactive slot bootable on trial for a Secure Boot
// release: it copies the slot's signed UKI (read from uki, checked against
// the facts' digest for the slot) to the ESP as /plumb/<slot>/uki.efi and
// writes the trial entry that starts it last. The firmware checks the
// UKI's signature when systemd-boot starts it; the UKI's own command line
// holds the slot's root and verity root hash.
func (d *Device) InstallUKI(ctx context.Context, uki io.Reader, facts *release.Facts, partUUID string) error {
	s, p, err := d.inactive()
	if err != nil {
		return fmt.Errorf("installing the UKI: %w", err)
	}
	want, ok := facts.UKI[string(s)]
	if !ok {
		return fmt.Errorf("installing slot %s: release facts: uki: expected a UKI for slot %s, got none", s, s)
	}
	partUUID = strings.ToLower(partUUID)
	if partUUID == "" || (p.PARTUUID != "" && partUUID != p.PARTUUID) {
		return fmt.Errorf("installing slot %s: PARTUUID: expected the slot's %q, got %q", s, p.PARTUUID, partUUID)
	}
	if err := d.Discard(s); err != nil {
		return fmt.Errorf("installing slot %s: %w", s, err)
	}
	h := sha256.New()
	cr := &iox.CountingReader{R: io.TeeReader(io.LimitReader(ctxio.Reader(ctx, uki), want.Size+1), h)}
	dst := bootentry.SlotUKI(s)
	err = d.writeFile(dst, cr, func() error {
		if sum := hex.EncodeToString(h.Sum(nil)); cr.N != want.Size || sum != strings.ToLower(want.SHA256) {
			return fmt.Errorf("%s: expected %d bytes with sha256 %s, got %d bytes with sha256 %s: %w", dst, want.Size, want.SHA256, cr.N, sum, ErrDigest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("installing slot %s: %w", s, err)
	}
	name, content := trialEntry(facts, s, partUUID, true)
	if err := d.writeFile(path.Join(bootentry.EntriesDir, name), strings.NewReader(content), nil); err != nil {
		return fmt.Errorf("installing slot %s: boot entry: %w", s, err)
	}
	d.log().Info("slot installed on trial", "slot", s, "version", facts.Version, "entry", name, "uki", dst)
	return nil
}

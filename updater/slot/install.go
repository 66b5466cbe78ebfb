package slot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/iox"
)

// squashfsCache bounds the squashfs reader's block cache: the boot files
// are read once, front to back.
const squashfsCache = 4 << 20

// InstallBoot makes the inactive slot bootable on trial. It reads
// /boot/vmlinuz and /boot/initrd.img from the squashfs now in the slot
// (slotImage, size bytes: the partition or the image file), checks their
// sha256 and size against facts, and writes them to the ESP as
// /plumb/<slot>/{vmlinuz,initrd.img} (temp file, then rename). It removes
// the slot's older entries before touching its files, and writes the trial
// entry plumb-<version>+3.conf last, booting partUUID with facts.Cmdline.
func (d *Device) InstallBoot(ctx context.Context, slotImage io.ReaderAt, size int64, facts *release.Facts, partUUID string) error {
	s, p, err := d.inactive()
	if err != nil {
		return fmt.Errorf("installing boot files: %w", err)
	}
	if facts == nil {
		return fmt.Errorf("installing slot %s: expected release facts, got none", s)
	}
	if err := facts.Validate(); err != nil {
		return fmt.Errorf("installing slot %s: %w", s, err)
	}
	for _, c := range []struct {
		field string
		d     release.Digest
	}{{"kernel", facts.Kernel}, {"initrd", facts.Initrd}} {
		if _, err := hex.DecodeString(c.d.SHA256); err != nil || len(c.d.SHA256) != 64 || c.d.Size <= 0 {
			return fmt.Errorf("installing slot %s: release facts: %s: expected a sha256 of 64 hex digits and a positive size, got %q and %d", s, c.field, c.d.SHA256, c.d.Size)
		}
	}
	partUUID = strings.ToLower(partUUID)
	if partUUID == "" || (p.PARTUUID != "" && partUUID != p.PARTUUID) {
		return fmt.Errorf("installing slot %s: PARTUUID: expected the slot's %q, got %q", s, p.PARTUUID, partUUID)
	}
	sq, err := squashfs.Read(readerAtStorage{io.NewSectionReader(slotImage, 0, size)}, size, 0, 0)
	if err != nil {
		return fmt.Errorf("installing slot %s: reading its squashfs: %w", s, err)
	}
	sq.SetCacheSize(squashfsCache)

	// An old entry of this slot would boot the new files with the old
	// entry's counter (or none): remove it first.
	if err := d.Discard(s); err != nil {
		return fmt.Errorf("installing slot %s: %w", s, err)
	}
	for _, f := range []struct {
		src, dst string
		want     release.Digest
	}{
		{bootentry.ImageKernel, bootentry.SlotKernel(s), facts.Kernel},
		{bootentry.ImageInitrd, bootentry.SlotInitrd(s), facts.Initrd},
	} {
		if err := d.copyBootFile(ctx, sq, f.src, f.dst, f.want); err != nil {
			return fmt.Errorf("installing slot %s: %w", s, err)
		}
	}
	name, content := TrialEntry(facts, s, partUUID)
	if err := d.writeFile(path.Join(bootentry.EntriesDir, name), strings.NewReader(content), nil); err != nil {
		return fmt.Errorf("installing slot %s: boot entry: %w", s, err)
	}
	d.log().Info("slot installed on trial", "slot", s, "version", facts.Version, "entry", name)
	return nil
}

// TrialEntry returns the file name (plumb-<version>+3.conf, bootentry.NewTrial) and content of
// the boot-counting trial entry for a release installed in slot, whose root
// partition is partUUID.
// The entry boots the slot's kernel and initrd (the installer's and
// non-Secure-Boot releases' way); InstallUKI writes one that starts the UKI.
func TrialEntry(facts *release.Facts, slot disklayout.Slot, partUUID string) (name, content string) {
	return trialEntry(facts, slot, partUUID, false)
}

// TrialEntryUKI is TrialEntry for a Secure Boot release: the entry
// InstallUKI writes, starting the slot's signed UKI (bootentry.SlotUKI).
func TrialEntryUKI(facts *release.Facts, slot disklayout.Slot, partUUID string) (name, content string) {
	return trialEntry(facts, slot, partUUID, true)
}

// CheckedReader passes rc on and fails with ErrDigest at its end when
// what was read is not want (size and sha256); name is the file's name
// for the error. The installer writes a UKI to a fresh ESP through it.
func CheckedReader(name string, rc io.ReadCloser, want release.Digest) io.ReadCloser {
	return &digestReader{name: strings.TrimPrefix(name, "/"), r: rc, c: rc, h: sha256.New(), want: want}
}

func trialEntry(facts *release.Facts, slot disklayout.Slot, partUUID string, uki bool) (name, content string) {
	e := bootentry.NewTrial(facts.Version, slot, partUUID, facts.Cmdline)
	if p, err := facts.VerityParams(); err == nil && p != nil {
		e.Verity = p.Cmdline()
	}
	e.UKI = uki
	return e.Name(), e.Content()
}

// BootFile names a slot's boot file in the release image.
type BootFile int

const (
	Kernel BootFile = iota // /boot/vmlinuz
	Initrd                 // /boot/initrd.img
)

// OpenBootFile opens the kernel or the initrd inside the squashfs release
// image slotImage (size bytes) and checks what is read against want: the
// reader fails with ErrDigest at its end when the bytes do not match (the
// installer writes them to a fresh ESP through it).
func OpenBootFile(slotImage io.ReaderAt, size int64, which BootFile, want release.Digest) (io.ReadCloser, error) {
	sq, err := squashfs.Read(readerAtStorage{io.NewSectionReader(slotImage, 0, size)}, size, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the release's squashfs: %w", err)
	}
	sq.SetCacheSize(squashfsCache)
	name := bootentry.ImageKernel
	if which == Initrd {
		name = bootentry.ImageInitrd
	}
	f, err := sq.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opening /%s in the image: %w", name, err)
	}
	return &digestReader{name: name, r: f, c: f, h: sha256.New(), want: want}, nil
}

// digestReader checks size and sha256 of what it passes on.
type digestReader struct {
	name string
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	n    int64
	want release.Digest
}

func (d *digestReader) Read(p []byte) (int, error) {
	if d.n+int64(len(p)) > d.want.Size+1 {
		p = p[:max(0, d.want.Size+1-d.n)]
	}
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	if err == io.EOF || d.n > d.want.Size {
		sum := hex.EncodeToString(d.h.Sum(nil))
		if d.n != d.want.Size || sum != strings.ToLower(d.want.SHA256) {
			return n, fmt.Errorf("/%s: expected %d bytes with sha256 %s, got %d bytes with sha256 %s: %w", d.name, d.want.Size, d.want.SHA256, d.n, sum, ErrDigest)
		}
	}
	return n, err
}

func (d *digestReader) Close() error { return d.c.Close() }

// copyBootFile streams src from the squashfs to dst on the ESP, hashing as
// it goes; dst only appears when the digest matches.
func (d *Device) copyBootFile(ctx context.Context, sq *squashfs.FileSystem, src, dst string, want release.Digest) error {
	f, err := sq.Open(src)
	if err != nil {
		return fmt.Errorf("opening /%s in the image: %w", src, err)
	}
	defer f.Close()
	h := sha256.New()
	r := io.TeeReader(io.LimitReader(ctxio.Reader(ctx, f), want.Size+1), h)
	n := int64(0)
	check := func() error {
		sum := hex.EncodeToString(h.Sum(nil))
		if n != want.Size || sum != strings.ToLower(want.SHA256) {
			return fmt.Errorf("/%s: expected %d bytes with sha256 %s, got %d bytes with sha256 %s: %w", src, want.Size, want.SHA256, n, sum, ErrDigest)
		}
		return nil
	}
	if d.DryRun {
		n, err = io.Copy(io.Discard, r)
		if err != nil {
			return fmt.Errorf("reading /%s: %w", src, err)
		}
		if err := check(); err != nil {
			return err
		}
		d.log().Info("dry run: not writing boot file", "file", dst, "bytes", n)
		return nil
	}
	cr := &iox.CountingReader{R: r}
	err = d.writeFile(dst, cr, func() error { n = cr.N; return check() })
	if err != nil {
		return err
	}
	d.log().Info("boot file written", "file", dst, "bytes", n, "sha256", want.SHA256)
	return nil
}

// writeFile writes r to name through a temp file; verify, if given, runs
// after the data is synced and before the rename.
func (d *Device) writeFile(name string, r io.Reader, verify func() error) error {
	if d.DryRun {
		d.log().Info("dry run: not writing", "file", name)
		return nil
	}
	tmp := name + ".tmp"
	f, err := d.ESP.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && verify != nil {
		err = verify()
	}
	if err == nil {
		err = d.ESP.Rename(tmp, name)
	}
	if err != nil {
		if rerr := d.ESP.Remove(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if errors.Is(err, ErrDigest) {
			return err
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// readerAtStorage is the read-only backend.Storage go-diskfs's squashfs
// reader wants, over any io.ReaderAt.
type readerAtStorage struct{ *io.SectionReader }

var _ backend.Storage = readerAtStorage{}

func (readerAtStorage) Close() error                 { return nil }
func (s readerAtStorage) Stat() (fs.FileInfo, error) { return sizeInfo(s.Size()), nil }
func (readerAtStorage) Sys() (*os.File, error)       { return nil, backend.ErrNotSuitable }
func (readerAtStorage) Path() string                 { return "" }
func (readerAtStorage) Writable() (backend.WritableFile, error) {
	return nil, backend.ErrIncorrectOpenMode
}

type sizeInfo int64

func (s sizeInfo) Name() string           { return "slot" }
func (s sizeInfo) Size() int64            { return int64(s) }
func (s sizeInfo) Mode() fs.FileMode      { return 0o444 }
func (s sizeInfo) ModTime() (t time.Time) { return t }
func (s sizeInfo) IsDir() bool            { return false }
func (s sizeInfo) Sys() any               { return nil }

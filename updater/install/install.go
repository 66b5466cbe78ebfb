// Package install owns `plumbd install`: it puts the newest release for the
// device's hardware and channel on a blank disk, pulled from the TUF
// repository, with the same layout as the build's disk.img.
//
// Run's order, and why: pick the disk, refusing one in use (a mounted
// filesystem or swap on it, whatever the boot path; see System.InUse) even
// with --force, and one that holds anything unless forced, and open it
// with O_EXCL; refresh the TUF metadata and choose the release; stream
// the release into slot A's region of the disk, hashing as it goes; only
// when its length and sha256 match TUF write the partition table, so a
// tampered or truncated release stops the installer with the disk's
// partition table never written (the bytes written into the slot's region
// are zeroed again). Then the data filesystem (the builder's empty ext4,
// shipped compressed), the ESP (systemd-boot, loader.conf, slot A's kernel
// and initrd checked against the release facts, its boot-counting trial
// entry last), a read-back verification of slot A, the data partition and
// the ESP's boot files, and a sync. The first boot commits slot A after
// its health checks like any trial. Not safe for concurrent use.
//
// A Secure Boot release (facts with a UKI per slot) gets what the agent
// writes on an update: slot A's signed UKI, a TUF target downloaded and
// checked against the facts before the partition table is written, and the
// entry that starts it (slot.TrialEntryUKI); systemd-boot is the signed
// one the installer medium carries. When the data partition is the
// builder's unprovisioned one (partitions.data_encryption: luks2-tpm), the
// installer booted under Secure Boot and its medium is signed with the
// release's db certificate, PCR 7 is what the installed chain will give:
// the installer creates the LUKS2 volume and seals its key to this TPM
// (datacrypt.Provision) after everything else is verified, and prints the
// recovery key once. Otherwise it leaves the partition to plumb-init on the
// first boot under Secure Boot, and says why.
package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/diskimg"
	"github.com/plumb-os/plumb/internal/errclass"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/updater/datacrypt"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/slot"
)

// repository is what the installer needs of the TUF client; *fetch.Client.
type repository interface {
	Refresh(ctx context.Context) error
	Targets() ([]fetch.Target, error)
	Download(ctx context.Context, targetPath string, w io.Writer, progress io.Writer) (int64, error)
}

// Options are Run's inputs.
type Options struct {
	// Disk is the device (or image file) to install to, or "auto".
	Disk string
	// Force overwrites a disk that holds partitions or data.
	Force bool
	// BootPartUUID is the PARTUUID of the partition the installer was
	// booted from (BootPartUUID: the USB stick's ESP), or "". The disk that
	// holds it is never written, even with Force.
	BootPartUUID string
	// DryRun does everything that only reads (refresh, choice, disk
	// checks, download and verification of the release into nothing) and
	// writes nothing.
	DryRun bool
	// Hardware, Channel, DeviceID and Group choose the release
	// (release.Choose: a paused or halted release, or one whose wave has
	// not reached the device, is not installed).
	Hardware, Channel, DeviceID, Group string
	// Layout is the disk to write (from the installer initramfs).
	Layout *config.Installer
	// Root prefixes Layout's file paths ("/" in the installer).
	Root string
	Repo repository
	// SysBlock and Dev list the disks for Disk "auto": "/sys/class/block"
	// and "/dev".
	SysBlock, Dev string
	// System is where the in-use check looks (nil: DefaultSystem, the
	// running kernel's /sys and /proc).
	System *System
	// SecureBoot reports the firmware's SecureBoot variable (nil: off).
	SecureBoot func() (bool, error)
	// TPM is the device's TPM, or nil: with it, an installer booted under
	// Secure Boot seals the data partition (see the package doc).
	TPM transport.TPM
	// TempDir holds a Secure Boot release's UKI between its download and
	// the ESP ("": os.TempDir(); the installer's is a tmpfs).
	TempDir string
	// Console receives progress lines for people ("plumb-install: ...").
	Console io.Writer
	// Report, when set, gets every progress step (best effort: it must
	// not block).
	Report func(Progress)
	Log    *slog.Logger
}

// Progress is one step of an install, as reported to the server.
type Progress struct {
	Phase   string `json:"phase"` // refreshing, downloading, partitioning, data, esp, verifying, sealing, done, failed
	Version string `json:"version,omitempty"`
	Disk    string `json:"disk,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Result is what an install did.
type Result struct {
	Version string
	Disk    string
	Bytes   int64 // release bytes written
	// Sealed: the installer created the data partition's LUKS2 volume
	// and sealed its key to the TPM.
	Sealed bool
}

type run struct {
	o     Options
	log   *slog.Logger
	prog  Progress
	start time.Time
}

// say prints a console line with the seconds since Run started.
func (r *run) say(format string, args ...any) {
	if r.o.Console != nil {
		fmt.Fprintf(r.o.Console, "plumb-install: [%5.1fs] "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
	}
}

func (r *run) step(phase string) {
	r.prog.Phase = phase
	if r.o.Report != nil {
		r.o.Report(r.prog)
	}
}

// Run installs the newest release on the disk. See the package doc for the
// order of the steps.
func Run(ctx context.Context, o Options) (_ *Result, err error) {
	r := &run{o: o, log: o.Log, start: time.Now()}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if o.Layout == nil || o.Repo == nil {
		return nil, errors.New("install: expected a layout and a repository")
	}
	defer func() {
		if err != nil {
			r.prog.Error = err.Error()
			r.step("failed")
		}
	}()
	layout := disklayout.Layout{ESPSize: o.Layout.ESPSize, RootSize: o.Layout.RootSize, DataSize: o.Layout.DataSize, Seed: o.Layout.Seed}
	if err := layout.Validate(); err != nil {
		return nil, fmt.Errorf("installer config: %w", err)
	}
	parts := layout.Partitions()
	esp, rootA, rootB, data := parts[0], parts[1], parts[2], parts[3]

	// 1. The disk, before any network: one in use is refused even with
	// --force (a mounted filesystem on it: the running root, /data), and
	// it stays open with O_EXCL, so nothing mounts it meanwhile.
	sys := DefaultSystem
	if o.System != nil {
		sys = *o.System
	}
	if o.Disk != "" && o.Disk != "auto" {
		if err := refuseInUse(sys, o.Disk); err != nil { // before even reading it
			return nil, err
		}
	}
	d, err := Pick(o.Disk, o.SysBlock, o.Dev, layout.DiskSize())
	if err != nil {
		return nil, err
	}
	r.prog.Disk = d.Path
	if err := refuseInUse(sys, d.Path); err != nil {
		return nil, err
	}
	mode := os.O_RDWR
	if o.DryRun {
		mode = os.O_RDONLY
	}
	disk, err := openExclusive(d.Path, mode)
	if err != nil {
		return nil, err
	}
	defer disk.Close()
	if d.Size < layout.DiskSize() {
		return nil, errclass.Errorf(ErrNoDisk, "disk %s: %d bytes, expected at least %d for the layout; nothing was written", d.Path, d.Size, layout.DiskSize())
	}
	if o.BootPartUUID != "" {
		boot, err := holdsPartition(d.Path, o.BootPartUUID)
		if err != nil {
			return nil, err
		}
		if boot {
			return nil, errclass.Errorf(ErrNotEmpty, "disk %s holds the partition the installer booted from (PARTUUID %s): refusing to overwrite it, even with --force; nothing was written", d.Path, o.BootPartUUID)
		}
	}
	if !d.Empty() {
		if !o.Force {
			return nil, errclass.Errorf(ErrNotEmpty, "disk %s holds %s: refusing to overwrite it without --force; nothing was written", d.Path, d.Holds)
		}
		r.say("disk %s holds %s: overwriting it (--force)", d.Path, d.Holds)
	}

	// 2. Refresh and choose.
	r.step("refreshing")
	r.say("refreshing the repository's metadata")
	if err := o.Repo.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("refreshing TUF metadata: %w", err)
	}
	targets, err := o.Repo.Targets()
	if err != nil {
		return nil, err
	}
	ts := make([]release.Target, len(targets))
	for i, t := range targets {
		ts[i] = release.Target{Path: t.Path, Custom: t.Custom}
	}
	cand, skipped := release.Choose(ts, release.Want{Hardware: o.Hardware, Channel: o.Channel, DeviceID: o.DeviceID, Group: o.Group})
	for p, why := range skipped {
		r.log.Warn("target skipped", "target", p, "err", why)
	}
	if cand == nil {
		return nil, fmt.Errorf("no release for hardware %q on channel %q in the repository", o.Hardware, o.Channel)
	}
	f := cand.Facts
	r.prog.Version, r.prog.Total = f.Version, f.Rootfs.Size
	r.say("release %s (%s, %d bytes)", f.Version, cand.Path, f.Rootfs.Size)
	if f.Rootfs.Size > rootA.Size {
		return nil, fmt.Errorf("release %s: %d bytes do not fit slot A of %d bytes", f.Version, f.Rootfs.Size, rootA.Size)
	}

	r.say("installing %s on %s (%d bytes)", f.Version, d.Path, d.Size)

	// 3. The release into slot A's region, verified before anything else
	// is written.
	r.step("downloading")
	start := time.Now()
	var dst io.Writer = io.Discard
	if !o.DryRun {
		dst = io.NewOffsetWriter(disk, rootA.Start)
	}
	lim := &limitWriter{w: dst, left: rootA.Size}
	n, err := o.Repo.Download(ctx, cand.Path, lim, &progressLines{r: r, every: 5 * time.Second, last: time.Now()})
	if err != nil {
		if !o.DryRun && lim.written > 0 {
			if zerr := zero(disk, rootA.Start, lim.written); zerr != nil {
				err = errors.Join(err, fmt.Errorf("zeroing the %d bytes written: %w", lim.written, zerr))
			} else {
				disk.Sync()
			}
		}
		r.say("release %s failed: %v; the partition table was not written", f.Version, err)
		return nil, fmt.Errorf("release %s: %w", f.Version, err)
	}
	r.prog.Bytes = n
	r.say("release %s downloaded and verified against TUF: %d bytes in %.1fs", f.Version, n, time.Since(start).Seconds())
	// A Secure Boot release: slot A's signed UKI, before the partition
	// table too.
	var uki string
	if f.UKI != nil {
		uki, err = r.downloadUKI(ctx, f)
		if uki != "" {
			defer os.Remove(uki)
		}
		if err != nil {
			if !o.DryRun {
				if zerr := zero(disk, rootA.Start, n); zerr != nil {
					err = errors.Join(err, fmt.Errorf("zeroing the %d bytes written: %w", n, zerr))
				} else {
					disk.Sync()
				}
			}
			r.say("release %s failed: %v; the partition table was not written", f.Version, err)
			return nil, fmt.Errorf("release %s: %w", f.Version, err)
		}
	}
	if o.DryRun {
		r.say("dry run: would write the partition table, slot A, the data filesystem and the ESP of %s; nothing written", d.Path)
		return &Result{Version: f.Version, Disk: d.Path, Bytes: n}, nil
	}
	if err := disk.Sync(); err != nil {
		return nil, fmt.Errorf("syncing slot A: %w", err)
	}
	if vp, err := f.VerityParams(); err != nil || vp != nil {
		if err == nil {
			err = slot.FormatVerity(verity.Section{RW: disk, Start: rootA.Start, Size: rootA.Size}, rootA.Size, n, vp, r.log.Info)
		}
		if err == nil {
			err = disk.Sync()
		}
		if err != nil {
			if zerr := zero(disk, rootA.Start, min(rootA.Size, verity.SlotSize(n))); zerr != nil {
				err = errors.Join(err, zerr)
			}
			r.say("release %s failed: %v; the partition table was not written", f.Version, err)
			return nil, fmt.Errorf("release %s: %w", f.Version, err)
		}
		r.say("verity tree written after the image and checked: root hash %x", vp.RootHash)
	}

	// 4. Partition table; clear slot B's start (a forced disk's leftovers).
	r.step("partitioning")
	if _, err := diskimg.WriteTable(disk, d.Size, layout); err != nil {
		return nil, err
	}
	if err := zero(disk, rootB.Start, min(rootB.Size, 1<<20)); err != nil {
		return nil, fmt.Errorf("clearing slot B: %w", err)
	}
	r.say("partition table written: %s %s %s %s", esp.Name, rootA.Name, rootB.Name, data.Name)

	// 5. The data filesystem.
	r.step("data")
	if err := r.writeData(ctx, disk, data); err != nil {
		return nil, fmt.Errorf("partition %s: %w", data.Name, err)
	}

	// 6. The ESP: bootloader, loader.conf, slot A's boot files, trial entry.
	r.step("esp")
	slotImage := io.NewSectionReader(disk, rootA.Start, n)
	boot, err := os.Stat(r.file(o.Layout.Bootloader))
	if err != nil {
		return nil, fmt.Errorf("bootloader: %w", err)
	}
	files := []diskimg.ESPFile{
		{Path: bootentry.Bootloader, Source: fstree.HostFile(r.file(o.Layout.Bootloader)), Size: boot.Size()},
		{Path: bootentry.LoaderConfPath, Source: fstree.Bytes(bootentry.LoaderConf), Size: int64(len(bootentry.LoaderConf))},
	}
	var entryName, entry, what string
	var check []espCheck
	if uki != "" {
		entryName, entry = slot.TrialEntryUKI(f, disklayout.A, rootA.PartUUID)
		want := f.UKI[string(disklayout.A)]
		files = append(files, diskimg.ESPFile{Path: bootentry.SlotUKI(disklayout.A), Source: ukiSource{uki, want}, Size: want.Size})
		check = append(check, espCheck{bootentry.SlotUKI(disklayout.A), want})
		what = "slot a's signed UKI"
	} else {
		entryName, entry = slot.TrialEntry(f, disklayout.A, rootA.PartUUID)
		files = append(files,
			diskimg.ESPFile{Path: bootentry.SlotKernel(disklayout.A), Source: bootSource{slotImage, n, slot.Kernel, f.Kernel}, Size: f.Kernel.Size},
			diskimg.ESPFile{Path: bootentry.SlotInitrd(disklayout.A), Source: bootSource{slotImage, n, slot.Initrd, f.Initrd}, Size: f.Initrd.Size})
		check = append(check, espCheck{bootentry.SlotKernel(disklayout.A), f.Kernel}, espCheck{bootentry.SlotInitrd(disklayout.A), f.Initrd})
		what = "slot a's kernel and initrd"
	}
	files = append(files, diskimg.ESPFile{Path: path.Join(bootentry.EntriesDir, entryName), Source: fstree.Bytes(entry), Size: int64(len(entry))})
	check = append(check, espCheck{path.Join(bootentry.EntriesDir, entryName), digestOf(entry)})
	if err := diskimg.WriteESP(ctx, disk, esp, layout.Seed, files, o.Layout.ModTime); err != nil {
		return nil, err
	}
	r.say("ESP written: systemd-boot, %s, entry %s", what, entryName)

	// 7. Verify what is on the disk, then sync.
	r.step("verifying")
	if err := disk.Sync(); err != nil {
		return nil, fmt.Errorf("syncing disk: %w", err)
	}
	if err := verify(ctx, disk, rootA.Start, f.Rootfs); err != nil {
		return nil, fmt.Errorf("slot A read back: %w", err)
	}
	if err := verify(ctx, disk, data.Start, release.Digest{SHA256: o.Layout.DataSHA256, Size: o.Layout.DataBytes}); err != nil {
		return nil, fmt.Errorf("partition %s read back: %w", data.Name, err)
	}
	if err := verifyESP(disk, esp, check); err != nil {
		return nil, fmt.Errorf("ESP read back: %w", err)
	}
	r.say("verified: slot a matches TUF (sha256 %s), data and ESP read back", f.Rootfs.SHA256)

	// 8. A sealed data partition, when PCR 7 now is the installed chain's.
	sealed, err := r.sealData(ctx, disk, data, f)
	if err != nil {
		return nil, fmt.Errorf("partition %s: %w", data.Name, err)
	}
	rereadPartitions(disk)
	r.step("done")
	return &Result{Version: f.Version, Disk: d.Path, Bytes: n, Sealed: sealed}, nil
}

// downloadUKI downloads slot A's signed UKI of a Secure Boot release (TUF
// target release.UKIPath, length and sha256 checked by the fetcher, as the
// agent does on an update) into a temporary file and returns its path; the
// ESP copy is checked against the facts again as it is written.
func (r *run) downloadUKI(ctx context.Context, f *release.Facts) (string, error) {
	s := string(disklayout.A)
	want, ok := f.UKI[s]
	if !ok {
		return "", fmt.Errorf("release facts: uki: expected a UKI for slot %s, got none", s)
	}
	target := release.UKIPath(f.Hardware, f.Version, s)
	tmp, err := os.CreateTemp(r.o.TempDir, "plumb-install-uki-*.efi")
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", target, err)
	}
	defer tmp.Close()
	lim := &limitWriter{w: tmp, left: want.Size}
	n, err := r.o.Repo.Download(ctx, target, lim, nil)
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return tmp.Name(), fmt.Errorf("downloading %s: %w", target, err)
	}
	r.say("slot a's signed UKI downloaded and verified against TUF: %s, %d bytes", target, n)
	return tmp.Name(), nil
}

// ukiSource is the downloaded UKI, checked against the facts as it is
// written to the ESP.
type ukiSource struct {
	path string
	want release.Digest
}

func (u ukiSource) Open() (io.ReadCloser, error) {
	f, err := os.Open(u.path)
	if err != nil {
		return nil, err
	}
	return slot.CheckedReader(bootentry.SlotUKI(disklayout.A), f, u.want), nil
}

// sealData creates the LUKS2 volume of the builder's unprovisioned data
// partition (datapart) and seals its key to this TPM, when the PCR 7 the
// installer booted with is the one the installed release's signed chain
// gives (whyNotSeal); it reports whether it did. Otherwise, or for a plain
// data partition, it leaves the partition as written. A failed creation
// leaves the marker (datacrypt writes the LUKS2 header last), so plumb-init
// creates the volume on the first boot under Secure Boot.
func (r *run) sealData(ctx context.Context, disk *os.File, part disklayout.Partition, f *release.Facts) (bool, error) {
	block := make([]byte, datapart.MarkerSize)
	if _, err := disk.ReadAt(block, part.Start); err != nil {
		return false, err
	}
	if !datapart.IsMarker(block) {
		return false, nil
	}
	if why := r.whyNotSeal(f); why != "" {
		r.say("data partition left unprovisioned: %s; plumb-init creates it and seals its key on the first boot under Secure Boot", why)
		return false, nil
	}
	r.step("sealing")
	start := time.Now()
	u, err := datacrypt.Provision(ctx, &region{f: disk, off: part.Start, size: part.Size}, part.Size, r.o.TPM)
	if err != nil {
		return false, fmt.Errorf("creating the sealed data volume: %w (the partition stays unprovisioned: plumb-init creates it on the first boot under Secure Boot)", err)
	}
	clear(u.VolumeKey)
	if err := disk.Sync(); err != nil {
		return false, fmt.Errorf("syncing the data volume: %w", err)
	}
	r.say("data partition encrypted and sealed to this TPM (PCR 7 %x, PCR 15 zero) in %.1fs; its recovery key (LUKS2 keyslot 0) is shown this once, write it down: recovery_key=%s",
		u.PCR7, time.Since(start).Seconds(), u.RecoveryKey)
	return true, nil
}

// whyNotSeal says why the installer must not seal the data partition's
// key now, or "" when PCR 7 is the installed chain's: the installer booted
// under Secure Boot through a chain signed with the db certificate the
// release is signed with (the installer's PCR 7 then holds the same
// SecureBoot, PK, KEK, db, dbx and authority events as the first boot's),
// and the release asks for a sealed /data.
func (r *run) whyNotSeal(f *release.Facts) string {
	const opt = datapart.CmdlineKey + "=" + datapart.Sealed
	m := f.Measured
	switch {
	case f.UKI == nil || m == nil || m.SecureBoot == nil:
		return fmt.Sprintf("release %s is not a Secure Boot release", f.Version)
	case !slices.Contains(strings.Fields(m.Cmdline[string(disklayout.A)]), opt):
		return fmt.Sprintf("release %s does not ask for it (no %s on slot a's command line)", f.Version, opt)
	case r.o.Layout.SecureBootDB == "":
		return "the installer is not signed for Secure Boot (built without boot.secure_boot)"
	case !strings.EqualFold(r.o.Layout.SecureBootDB, m.SecureBoot.DB.SHA256):
		return fmt.Sprintf("the installer is signed with the db certificate sha256 %s, release %s with %s (PCR 7 would differ)", r.o.Layout.SecureBootDB, f.Version, m.SecureBoot.DB.SHA256)
	}
	on := false
	var err error
	if r.o.SecureBoot != nil {
		on, err = r.o.SecureBoot()
	}
	switch {
	case err != nil:
		return "reading the SecureBoot variable: " + err.Error()
	case !on:
		return "the installer booted with Secure Boot off (its PCR 7 is not the signed chain's)"
	case r.o.TPM == nil:
		return "no TPM"
	}
	return ""
}

// region is a partition's part of the disk as datacrypt.Volume.
type region struct {
	f         *os.File
	off, size int64
}

func (g *region) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > g.size {
		return 0, fmt.Errorf("reading %d bytes at %d: outside the partition's %d bytes", len(p), off, g.size)
	}
	return g.f.ReadAt(p, g.off+off)
}

func (g *region) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > g.size {
		return 0, fmt.Errorf("writing %d bytes at %d: outside the partition's %d bytes", len(p), off, g.size)
	}
	return g.f.WriteAt(p, g.off+off)
}

func (g *region) Sync() error { return g.f.Sync() }

func (r *run) file(p string) string { return filepath.Join(r.o.Root, filepath.FromSlash(p)) }

// writeData decompresses the shipped data filesystem into part, hashing it.
func (r *run) writeData(ctx context.Context, disk *os.File, part disklayout.Partition) error {
	src, err := os.Open(r.file(r.o.Layout.Data))
	if err != nil {
		return fmt.Errorf("data image: %w", err)
	}
	defer src.Close()
	zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return err
	}
	defer zr.Close()
	h := sha256.New()
	w := &limitWriter{w: io.NewOffsetWriter(disk, part.Start), left: part.Size}
	n, err := io.Copy(io.MultiWriter(w, h), ctxio.Reader(ctx, zr))
	if err != nil {
		return fmt.Errorf("writing the data filesystem: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != r.o.Layout.DataBytes || sum != r.o.Layout.DataSHA256 {
		return fmt.Errorf("data image %s: expected %d bytes with sha256 %s, got %d bytes with sha256 %s", r.o.Layout.Data, r.o.Layout.DataBytes, r.o.Layout.DataSHA256, n, sum)
	}
	r.say("data filesystem written: %d bytes", n)
	return nil
}

// bootSource is a boot file in the release image, checked as it is read.
type bootSource struct {
	img   io.ReaderAt
	size  int64
	which slot.BootFile
	want  release.Digest
}

func (b bootSource) Open() (io.ReadCloser, error) {
	return slot.OpenBootFile(b.img, b.size, b.which, b.want)
}

// verify re-reads size bytes at off and compares their sha256.
func verify(ctx context.Context, disk *os.File, off int64, want release.Digest) error {
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, io.NewSectionReader(disk, off, want.Size)))
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != want.Size || sum != want.SHA256 {
		return fmt.Errorf("expected %d bytes with sha256 %s, read %d bytes with sha256 %s", want.Size, want.SHA256, n, sum)
	}
	return nil
}

// espCheck is a file the ESP must hold.
type espCheck struct {
	name string
	want release.Digest
}

// verifyESP reads the FAT32 ESP back and checks the boot files and entry.
func verifyESP(disk *os.File, part disklayout.Partition, check []espCheck) error {
	fs, err := fat32.Read(file.New(disk, true), part.Size, part.Start, 512)
	if err != nil {
		return err
	}
	for _, c := range check {
		rd, err := fs.OpenFile(c.name, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rd)
		rd.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != c.want.Size || sum != c.want.SHA256 {
			return fmt.Errorf("%s: expected %d bytes with sha256 %s, read %d with %s", c.name, c.want.Size, c.want.SHA256, n, sum)
		}
	}
	return nil
}

func digestOf(s string) release.Digest {
	sum := sha256.Sum256([]byte(s))
	return release.Digest{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(s))}
}

// zero writes n zero bytes at off.
func zero(f *os.File, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// rereadPartitions asks the kernel to read the new partition table (a
// block device; an image file ignores it).
func rereadPartitions(f *os.File) {
	if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeDevice != 0 {
		unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	}
}

// limitWriter fails a write past left bytes and counts what it wrote.
type limitWriter struct {
	w       io.Writer
	left    int64
	written int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("more than the slot's %d bytes", l.written+l.left)
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	l.written += int64(n)
	return n, err
}

// progressLines prints the download's progress on the console now and then
// and reports it.
type progressLines struct {
	r     *run
	every time.Duration
	last  time.Time
}

func (p *progressLines) Write(b []byte) (int, error) {
	p.r.prog.Bytes += int64(len(b))
	if time.Since(p.last) >= p.every {
		p.last = time.Now()
		pr := p.r.prog
		p.r.say("downloading %s: %d of %d bytes (%d%%)", pr.Version, pr.Bytes, pr.Total, pr.Bytes*100/max(pr.Total, 1))
		p.r.step("downloading")
	}
	return len(b), nil
}

// IsRefusal reports whether err is the installer refusing the disk.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrNotEmpty) || errors.Is(err, ErrNoDisk) || errors.Is(err, ErrInUse)
}

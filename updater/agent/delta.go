package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/iox"
)

// bundleFile is where a delta bundle is downloaded, on the data partition
// beside the state file.
func (a *Agent) bundleFile() string { return filepath.Join(filepath.Dir(a.StatePath), "update.delta") }

// installDelta downloads the bundle dc (verified against TUF, resuming
// from done bytes) into a file on the data partition, then applies it:
// it reads the running slot, writes the inactive slot to sequentially and
// checks that the result is the full release c (size and sha256 from
// TUF). It returns the inactive slot, open, and the image size. The
// running slot is opened read-only. Memory: delta.MaxMemory plus a 1 MiB
// write buffer, whatever the image size.
//
// The state is saved before each step (downloading the bundle, applying
// it), so a restart resumes: a downloaded bundle is re-hashed, not fetched
// again; an interrupted apply starts again from the bundle.
func (a *Agent) installDelta(ctx context.Context, c, dc *release.Candidate, to disklayout.Slot, done int64) (_ *os.File, _ int64, err error) {
	st := a.state
	log := a.log().With("version", c.Facts.Version, "slot", to)
	st.Phase, st.Version, st.Target, st.Slot, st.Method = PhaseDownloading, c.Facts.Version, dc.Path, to, MethodDelta
	st.Bytes, st.Total = done, dc.Length
	if err := a.save(); err != nil {
		return nil, 0, err
	}
	// The slot about to be overwritten must not stay bootable.
	if err := a.Device.Discard(to); err != nil {
		return nil, 0, err
	}
	if err := roomFor(a.bundleFile(), dc.Length); err != nil {
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	bf, err := os.OpenFile(a.bundleFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("delta bundle: %w", err)
	}
	defer func() {
		bf.Close()
		if err == nil || ctx.Err() == nil {
			os.Remove(bf.Name()) // used, or refused: the fallback needs the room
		}
	}()
	log.Info("downloading delta", "target", dc.Path, "bytes", dc.Length, "full", c.Length, "resume_at", done)
	saver := &progressSaver{a: a, f: bf, every: 2 * time.Second, fetched: true}
	n, err := a.Repo.DownloadFile(ctx, dc.Path, bf, done, saver)
	if err != nil {
		if bf.Sync() == nil {
			st.Bytes = n
		}
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	if err := bf.Sync(); err != nil {
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	if err := bf.Truncate(n); err != nil { // a longer file from an older attempt
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	st.Phase, st.Bytes, st.Total = PhaseApplying, 0, c.Facts.Rootfs.Size
	if err := a.save(); err != nil {
		return nil, 0, err
	}

	// Cheap checks before the slot is written.
	h, err := delta.ReadHeader(io.NewSectionReader(bf, 0, n))
	if err != nil {
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	if got := hex.EncodeToString(h.BaseSHA256[:]); got != dc.Facts.BaseSHA256 {
		return nil, 0, fmt.Errorf("delta %s: its header's base sha256 %s is not base_sha256 %s of its facts", dc.Path, got, dc.Facts.BaseSHA256)
	}
	if got := hex.EncodeToString(h.TargetSHA256[:]); got != c.SHA256 || h.TargetSize != c.Length {
		return nil, 0, fmt.Errorf("delta %s: produces sha256 %s (%d bytes), not the release's %s (%d bytes)", dc.Path, got, h.TargetSize, c.SHA256, c.Length)
	}
	run, err := a.Device.OpenRunning()
	if err != nil {
		return nil, 0, err
	}
	defer run.Close()
	runSize, err := run.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, fmt.Errorf("delta %s: size of the running slot: %w", dc.Path, err)
	}
	if runSize < h.BaseSize {
		return nil, 0, fmt.Errorf("delta %s: %w: base of %d bytes, the running slot has %d", dc.Path, delta.ErrWrongBase, h.BaseSize, runSize)
	}

	out, err := a.Device.OpenInactive(c.Facts.Rootfs.Size)
	if err != nil {
		return nil, 0, err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
		}
	}()
	log.Info("applying delta", "target", dc.Path, "from", dc.Facts.From, "bytes", h.TargetSize)
	sum := sha256.New()
	prog := &progressSaver{a: a, every: 2 * time.Second}
	hw := &iox.HashWriter{W: out, H: sum}
	bw := bufio.NewWriterSize(io.MultiWriter(hw, prog), 1<<20)
	stats, err := delta.Apply(ctx, bw, io.NewSectionReader(run, 0, h.BaseSize), h.BaseSize, bufio.NewReaderSize(io.NewSectionReader(bf, 0, n), 64<<10))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	// Our own check against TUF, whatever the bundle says.
	if got := hex.EncodeToString(sum.Sum(nil)); got != c.SHA256 || hw.N != c.Length {
		return nil, 0, fmt.Errorf("delta %s: the slot written holds sha256 %s (%d bytes), the release is %s (%d bytes)", dc.Path, got, hw.N, c.SHA256, c.Length)
	}
	if err := out.Sync(); err != nil {
		return nil, 0, fmt.Errorf("delta %s: %w", dc.Path, err)
	}
	log.Info("delta applied", "copied", stats.CopyBytes, "literal", stats.LiteralBytes, "recompressed", stats.Recompressed, "kernels", stats.LZ4Units)
	ok = true
	return out, hw.N, nil
}

// roomFor checks that the file system of path can hold a file of n bytes
// there (counting what path already holds), so that a bundle too large for
// the data partition falls back at once instead of after its download.
func roomFor(path string, n int64) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &fs); err != nil {
		return nil // unknown: the download finds out
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	if fi, err := os.Stat(path); err == nil {
		free += fi.Size()
	}
	if free < n {
		return fmt.Errorf("%s: %d bytes free for a bundle of %d", filepath.Dir(path), free, n)
	}
	return nil
}

package tufrepo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/builder/delta"
	"github.com/plumb-os/plumb/format/release"
)

// DefaultDeltas is how many older releases plumb publish makes deltas from
// unless told otherwise.
const DefaultDeltas = 3

// targetFile is where the repository keeps a target's bytes: consistent
// snapshots name them <sha256>.<base name> in the target's directory.
func (r *Repo) targetFile(path, sha string) string {
	return filepath.Join(r.TargetsDir(), filepath.FromSlash(filepath.Dir(path)), sha+"."+filepath.Base(path))
}

// addDeltas adds to st the delta targets <hardware>/<version>/from-<old>.delta
// from the k newest full releases of f's hardware older than f.Version,
// encoding those that do not exist yet into the targets directory under t.
// A delta that cannot be made (the old image is missing or not a root
// image this encoder reads) is skipped with a warning: the full image is
// always there. Only cancellation and failures to write are errors.
func (r *Repo) addDeltas(ctx context.Context, t *txn, st *state, f *release.Facts, k int) error {
	type base struct {
		path  string
		facts *release.Facts
		tf    *metadata.TargetFiles
	}
	var bases []base
	for path, tf := range st.targets.Signed.Targets {
		if tf.Custom == nil {
			continue
		}
		of, err := release.Parse(*tf.Custom)
		if err != nil || of.Kind != release.KindFull || of.Hardware != f.Hardware ||
			path != release.TargetPath(of.Hardware, of.Version) || release.CompareVersions(of.Version, f.Version) >= 0 {
			continue
		}
		bases = append(bases, base{path, of, tf})
	}
	slices.SortFunc(bases, func(a, b base) int { return release.CompareVersions(b.facts.Version, a.facts.Version) })
	if len(bases) > k {
		bases = bases[:k]
	}
	newPath := release.TargetPath(f.Hardware, f.Version)
	newFile := r.targetFile(newPath, f.Rootfs.SHA256)
	log := r.opts.Log.With("hardware", f.Hardware, "version", f.Version)
	for _, b := range bases {
		baseSHA := hex.EncodeToString(b.tf.Hashes["sha256"])
		df := *f
		df.Kind, df.From, df.BaseSHA256 = release.KindDelta, b.facts.Version, baseSHA
		custom, err := json.Marshal(&df)
		if err != nil {
			return fmt.Errorf("encoding delta facts: %w", err)
		}
		raw := json.RawMessage(custom)
		dpath := release.DeltaPath(f.Hardware, f.Version, b.facts.Version)
		if old, ok := st.targets.Signed.Targets[dpath]; ok && old.Custom != nil {
			if of, err := release.Parse(*old.Custom); err == nil && of.BaseSHA256 == baseSHA && of.Rootfs == f.Rootfs {
				old.Custom = &raw // same bundle; the facts (channel, rollout) follow the release
				continue
			}
		}
		tf, err := r.encodeDelta(ctx, t, b.path, r.targetFile(b.path, baseSHA), b.tf.Length, baseSHA, newFile, f, dpath)
		if errors.Is(err, errSkipDelta) {
			log.Warn("delta not made", "from", b.facts.Version, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		tf.Custom = &raw
		st.targets.Signed.Targets[dpath] = tf
	}
	return nil
}

// errSkipDelta marks a delta that cannot be made from these images.
var errSkipDelta = errors.New("delta skipped")

type skipError struct{ err error }

func (s *skipError) Error() string        { return s.err.Error() }
func (s *skipError) Unwrap() []error      { return []error{s.err, errSkipDelta} }
func (s *skipError) Is(target error) bool { return target == errSkipDelta }

// encodeDelta writes the bundle from oldFile to newFile as the target
// dpath (file <sha256>.from-<old>.delta) and returns its target entry
// (without custom facts).
func (r *Repo) encodeDelta(ctx context.Context, t *txn, oldPath, oldFile string, oldLen int64, oldSHA, newFile string, f *release.Facts, dpath string) (*metadata.TargetFiles, error) {
	oldF, err := os.Open(oldFile)
	if err != nil {
		return nil, &skipError{fmt.Errorf("base %s: %w", oldPath, err)}
	}
	defer oldF.Close()
	if fi, err := oldF.Stat(); err != nil || fi.Size() != oldLen {
		return nil, &skipError{fmt.Errorf("base %s: %s: expected %d bytes as targets.json says", oldPath, oldFile, oldLen)}
	}
	newF, err := os.Open(newFile)
	if err != nil {
		return nil, fmt.Errorf("delta to %s: %w", f.Version, err)
	}
	defer newF.Close()

	dir := filepath.Dir(newFile)
	tmp, err := os.CreateTemp(dir, ".delta-*")
	if err != nil {
		return nil, fmt.Errorf("writing target %s: %w", dpath, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	h := sha256.New()
	ew := &errWriter{w: io.MultiWriter(tmp, h)}
	bw := bufio.NewWriterSize(ew, 1<<20)
	start := time.Now()
	stats, err := delta.Encode(ctx, bw, oldF, newF, oldLen, f.Rootfs.Size, delta.Options{Log: r.opts.Log})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if ew.err != nil || ctx.Err() != nil {
			return nil, fmt.Errorf("writing target %s: %w", dpath, err)
		}
		return nil, &skipError{fmt.Errorf("from %s: %w", oldPath, err)}
	}
	// The bundle must name the images the metadata names.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("writing target %s: %w", dpath, err)
	}
	hd, err := wire.ReadHeader(tmp)
	if err != nil {
		return nil, fmt.Errorf("writing target %s: reading back its header: %w", dpath, err)
	}
	if got := hex.EncodeToString(hd.BaseSHA256[:]); got != oldSHA {
		return nil, &skipError{fmt.Errorf("base %s: %s: its sha256 %s is not the published %s", oldPath, oldFile, got, oldSHA)}
	}
	if got := hex.EncodeToString(hd.TargetSHA256[:]); got != f.Rootfs.SHA256 {
		return nil, fmt.Errorf("delta to %s: %s: its sha256 %s is not the release's %s", f.Version, newFile, got, f.Rootfs.SHA256)
	}
	err = tmp.Sync()
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("writing target %s: %w", dpath, err)
	}
	sum := h.Sum(nil)
	final := r.targetFile(dpath, hex.EncodeToString(sum))
	if _, err := os.Lstat(final); err != nil {
		if err := os.Rename(tmp.Name(), final); err != nil {
			return nil, fmt.Errorf("writing target %s: %w", dpath, err)
		}
		t.created = append(t.created, final)
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	} // else: left by an interrupted publish, same name, same content
	r.opts.Log.Info("delta made", "target", dpath, "bytes", stats.BundleBytes, "full", f.Rootfs.Size,
		"seconds", time.Since(start).Seconds())
	tf := metadata.TargetFile()
	tf.Length = stats.BundleBytes
	tf.Hashes["sha256"] = sum
	tf.Path = dpath
	return tf, nil
}

// errWriter remembers the first write error: a failure to write the
// bundle is the publish's failure, not a reason to skip the delta.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

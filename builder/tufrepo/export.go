package tufrepo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/medium"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/ctxio"
)

// ExportFile is the description plumb export writes at the top of a
// medium (format/medium).
const ExportFile = medium.ExportFile

// ExportOptions choose what a medium carries.
type ExportOptions struct {
	Hardware string
	Version  string   // "" the newest release of Hardware
	Since    []string // versions the devices run: a delta from each
}

// Export describes a written export.
type Export struct {
	Hardware string    `json:"hardware"`
	Version  string    `json:"version"`
	Since    []string  `json:"since,omitempty"`
	Created  time.Time `json:"created"`
	Targets  []string  `json:"targets"`
	Bytes    int64     `json:"bytes"` // of the target files
}

var rootVersionRE = regexp.MustCompile(`^[0-9]+\.root\.json$`)

// Export writes to dir (created; it must not exist or be empty) a
// self-contained copy of the repository a device can update from without
// network: the metadata exactly as published (every root version, the
// current timestamp, snapshot, targets and apps), and the target files of
// one release with the deltas from the versions in o.Since, laid out as
// on the server (metadata/, targets/<dir>/<sha256>.<name>). Nothing is
// re-signed. On failure dir is removed.
func (r *Repo) Export(ctx context.Context, dir string, o ExportOptions) (ex *Export, err error) {
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	rels, err := r.Releases()
	if err != nil {
		return nil, err
	}
	var full *Release
	var have []string
	for i, rel := range rels {
		f := rel.Facts
		if f.Kind != release.KindFull {
			continue
		}
		if f.Hardware != o.Hardware {
			if !slices.Contains(have, f.Hardware) {
				have = append(have, f.Hardware)
			}
			continue
		}
		if o.Version == "" && (full == nil || release.CompareVersions(f.Version, full.Facts.Version) > 0) || o.Version == f.Version {
			full = &rels[i]
		}
	}
	if full == nil {
		if o.Version != "" {
			return nil, invalid("export: no release %s for hardware %q in the repository", o.Version, o.Hardware)
		}
		if len(have) == 0 {
			return nil, invalid("export: no release for hardware %q in the repository (it has none)", o.Hardware)
		}
		return nil, invalid("export: no release for hardware %q in the repository (it has releases for: %s)", o.Hardware, strings.Join(have, ", "))
	}
	files := []Release{*full}
	for _, s := range o.Since {
		p := release.DeltaPath(o.Hardware, full.Facts.Version, s)
		i := slices.IndexFunc(rels, func(r Release) bool { return r.Path == p })
		if i < 0 {
			return nil, invalid("export: no delta from %s to %s published (%s): publish with --deltas", s, full.Facts.Version, p)
		}
		files = append(files, rels[i])
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("export: %w", err)
		}
		if ents, rerr := os.ReadDir(dir); rerr != nil || len(ents) > 0 {
			return nil, invalid("export: %s exists and is not empty", dir)
		}
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	meta := filepath.Join(dir, "metadata")
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return nil, err
	}
	names := []string{rootJSON, timestampJS,
		versioned(st.snapshot.Signed.Version, metadata.SNAPSHOT),
		versioned(st.targets.Signed.Version, metadata.TARGETS)}
	if st.apps != nil {
		names = append(names, versioned(st.apps.Signed.Version, appsRole))
	}
	ents, err := os.ReadDir(filepath.Join(r.dir, metaSubdir))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if rootVersionRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	for _, n := range names {
		if err := copyFile(ctx, filepath.Join(meta, n), r.metaPath(n)); err != nil {
			return nil, err
		}
	}
	ex = &Export{Hardware: o.Hardware, Version: full.Facts.Version, Since: o.Since, Created: time.Now().UTC()}
	for _, rel := range files {
		dst := filepath.Join(dir, filepath.FromSlash(rel.File))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := copyFile(ctx, dst, r.targetFile(rel.Path, rel.SHA256)); err != nil {
			return nil, err
		}
		ex.Targets = append(ex.Targets, rel.Path)
		ex.Bytes += rel.Length
	}
	desc, err := json.MarshalIndent(ex, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ExportFile), append(desc, '\n'), 0o644); err != nil {
		return nil, err
	}
	return ex, nil
}

// copyFile streams src to the new file dst and syncs it.
func copyFile(ctx context.Context, dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := io.Copy(out, ctxio.Reader(ctx, in)); err != nil {
		out.Close()
		return fmt.Errorf("export: copying %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

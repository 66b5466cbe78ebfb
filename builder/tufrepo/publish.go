package tufrepo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
)

// PublishOptions choose how a release is offered.
type PublishOptions struct {
	// Channel the release is published to; "" means the manifest's.
	Channel string
	// Rollout is the percentage of devices that may install it; nil
	// means 100.
	Rollout *int
	// Deltas is how many older releases of the same hardware (the newest
	// ones) get a delta bundle to this one, as targets
	// <hardware>/<version>/from-<old>.delta; 0 makes none (plumb publish's
	// default is DefaultDeltas).
	Deltas int
}

// Publish adds the build in buildDir (plumb build's output: manifest.json
// and rootfs.sqfs) as the target <hardware>/<version>/rootfs.sqfs with its
// release facts as custom field, and the build's installer (when it has
// one) as <hardware>/<version>/installer/vmlinuz and .../installer/initrd
// with the same facts of kind "installer", then signs new targets, snapshot
// and timestamp versions.
//
// The image is streamed into the repository (never held in memory) and its
// sha256 checked against the manifest. With p.Deltas, it also encodes
// delta bundles from older releases (see PublishOptions.Deltas), in the
// same transaction. Publishing a version again with the
// same bytes and facts changes nothing; with the same bytes but another
// channel or rollout it updates the facts; with other bytes it fails with
// ErrExists. On any failure the repository is left as it was.
func (r *Repo) Publish(ctx context.Context, buildDir string, p PublishOptions) (facts *release.Facts, err error) {
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	m, rootfs, err := readBuild(buildDir)
	if err != nil {
		return nil, err
	}
	f, err := factsFor(m, rootfs, p)
	if err != nil {
		return nil, err
	}
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	r.keepControl(st, f) // a halt or a wave schedule survives a publish again
	custom, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encoding release facts: %w", err)
	}
	raw := json.RawMessage(custom)
	log := r.opts.Log.With("hardware", f.Hardware, "version", f.Version)
	entries, err := publishEntries(m, buildDir, rootfs, f, raw)
	if err != nil {
		return nil, err
	}
	var todo []publishEntry
	for _, e := range entries {
		sum, err := hex.DecodeString(e.digest.SHA256)
		if err != nil {
			return nil, fmt.Errorf("manifest sha256 of %s: %w", e.src, err)
		}
		e.sum = sum
		e.copy = true
		if old, ok := st.targets.Signed.Targets[e.path]; ok {
			if old.Length != e.digest.Size || !bytes.Equal(old.Hashes["sha256"], sum) {
				return nil, fmt.Errorf("%w: %s is published with sha256 %x (%d bytes); %s has sha256 %s (%d bytes): give the new build another version",
					ErrExists, e.path, []byte(old.Hashes["sha256"]), old.Length, e.src, e.digest.SHA256, e.digest.Size)
			}
			if old.Custom != nil && jsonEqual(*old.Custom, e.custom) {
				continue
			}
			e.copy = false
		}
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		log.Info("release already published")
		return f, nil
	}

	// Keys first: a role short of its threshold fails before any copy.
	signers, err := r.signers(st.root, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP)
	if err != nil {
		return nil, err
	}
	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed publish: %w", rerr))
		}
	}()
	for _, e := range todo {
		if e.copy {
			if err := r.copyTarget(ctx, t, e.src, e.path, e.digest); err != nil {
				return nil, err
			}
		}
		tf := metadata.TargetFile()
		tf.Length = e.digest.Size
		tf.Hashes["sha256"] = e.sum
		custom := e.custom
		tf.Custom = &custom
		tf.Path = e.path
		st.targets.Signed.Targets[e.path] = tf
	}
	if p.Deltas > 0 {
		if err := r.addDeltas(ctx, t, st, f, p.Deltas); err != nil {
			return nil, err
		}
	}

	changed := map[string]bool{metadata.TARGETS: true, metadata.SNAPSHOT: true, metadata.TIMESTAMP: true}
	if err := r.signAndWrite(ctx, t, st, changed, signers); err != nil {
		return nil, err
	}
	log.Info("release published", "targets", len(todo), "targets_version", st.targets.Signed.Version, "channel", f.Channel, "rollout", f.Rollout)
	return f, nil
}

// publishEntry is one target a publish adds.
type publishEntry struct {
	path   string // target path
	src    string // file in the build directory
	digest release.Digest
	custom json.RawMessage
	sum    []byte
	copy   bool // the bytes are not in the repository yet
}

// publishEntries lists the targets of a build: the release image and, when
// the build made one, the installer's kernel and initramfs
// (<hardware>/<version>/installer/{vmlinuz,initrd}, facts of kind
// installer).
func publishEntries(m *builder.Manifest, buildDir, rootfs string, f *release.Facts, custom json.RawMessage) ([]publishEntry, error) {
	entries := []publishEntry{{path: release.TargetPath(f.Hardware, f.Version), src: rootfs, digest: f.Rootfs, custom: custom}}
	arts := map[string]builder.Artifact{}
	for _, a := range m.Artifacts {
		arts[a.Name] = a
	}
	if f.UKI != nil {
		u := *f
		u.Kind = release.KindUKI
		raw, err := json.Marshal(&u)
		if err != nil {
			return nil, err
		}
		for _, slot := range []string{"a", "b"} {
			src := filepath.Join(buildDir, builder.UKIFile(slot))
			if _, err := os.Stat(src); err != nil {
				return nil, invalid("%s: expected the build's signed UKI: %w", src, err)
			}
			entries = append(entries, publishEntry{path: release.UKIPath(f.Hardware, f.Version, slot), src: src, digest: f.UKI[slot], custom: raw})
		}
	}
	kernel, okK := arts[builder.KernelFile]
	initrd, okI := arts[builder.InstallerInitrdFile]
	if !okK || !okI {
		return entries, nil // a build without an installer
	}
	inst := *f
	inst.Kind = release.KindInstaller
	raw, err := json.Marshal(&inst)
	if err != nil {
		return nil, err
	}
	for _, e := range []struct {
		name string
		a    builder.Artifact
	}{{"vmlinuz", kernel}, {"initrd", initrd}} {
		src := filepath.Join(buildDir, e.a.Name)
		if _, err := os.Stat(src); err != nil {
			return nil, invalid("%s: expected the build's installer file: %w", src, err)
		}
		entries = append(entries, publishEntry{
			path: release.InstallerPath(f.Hardware, f.Version, e.name), src: src,
			digest: release.Digest{SHA256: e.a.SHA256, Size: e.a.Size}, custom: raw,
		})
	}
	return entries, nil
}

// readBuild reads a build directory's manifest and finds its rootfs image.
func readBuild(buildDir string) (*builder.Manifest, string, error) {
	if fi, err := os.Stat(buildDir); err != nil || !fi.IsDir() {
		return nil, "", invalid("%s: expected the output directory of plumb build", buildDir)
	}
	mpath := filepath.Join(buildDir, builder.ManifestFile)
	m, err := builder.ReadManifest(mpath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", invalid("%s: not found; expected the output directory of plumb build", mpath)
	}
	if err != nil {
		return nil, "", invalid("%w", err)
	}
	rootfs := filepath.Join(buildDir, builder.RootfsFile)
	if _, err := os.Stat(rootfs); err != nil {
		return nil, "", invalid("%s: expected the build's root filesystem image: %w", rootfs, err)
	}
	return m, rootfs, nil
}

// factsFor derives the release facts from a build manifest.
func factsFor(m *builder.Manifest, rootfsPath string, p PublishOptions) (*release.Facts, error) {
	f := &release.Facts{
		Kind:          release.KindFull,
		Name:          m.Name,
		Hardware:      m.Hardware,
		Version:       m.Version,
		Channel:       m.Channel,
		Rollout:       100,
		KernelRelease: m.KernelRelease,
		Cmdline:       extraCmdline(m),
		Kernel:        release.Digest{SHA256: m.Kernel.SHA256, Size: m.Kernel.Size},
		Initrd:        release.Digest{SHA256: m.Initrd.SHA256, Size: m.Initrd.Size},
		Measured:      m.Measured,
		Verity:        m.Verity,
	}
	if p.Channel != "" {
		f.Channel = p.Channel
	}
	if p.Rollout != nil {
		f.Rollout = *p.Rollout
	}
	for _, a := range m.Artifacts {
		if a.Name == builder.RootfsFile {
			f.Rootfs = release.Digest{SHA256: a.SHA256, Size: a.Size}
		}
		for _, slot := range []string{"a", "b"} {
			if a.Name == builder.UKIFile(slot) {
				if f.UKI == nil {
					f.UKI = map[string]release.Digest{}
				}
				f.UKI[slot] = release.Digest{SHA256: a.SHA256, Size: a.Size}
			}
		}
	}
	if f.Rootfs.SHA256 == "" {
		return nil, invalid("%s: manifest.json lists no %s artifact", filepath.Dir(rootfsPath), builder.RootfsFile)
	}
	if err := f.Validate(); err != nil {
		return nil, invalid("%s: %w", filepath.Join(filepath.Dir(rootfsPath), builder.ManifestFile), err)
	}
	return f, nil
}

// extraCmdline recovers the recipe's extra command line from the manifest's
// slot A options (bootentry.Entry.Options with the recipe's part appended).
func extraCmdline(m *builder.Manifest) string {
	var rootA string
	for _, p := range m.Partitions {
		if p.Name == disklayout.NameRootA {
			rootA = p.PartUUID
		}
	}
	e := bootentry.Entry{Version: m.Version, Slot: disklayout.A, PartUUID: rootA}
	if m.Verity != nil {
		if p, err := m.Verity.Params("verity"); err == nil {
			e.Verity = p.Cmdline()
		}
	}
	base := e.Options()
	if rest, ok := strings.CutPrefix(m.Cmdline, base); ok {
		return strings.TrimSpace(rest)
	}
	return ""
}

// copyTarget streams the image to targets/<path dir>/<sha256>.<name>
// (copyFile), checking size and sha256 against want; a mismatch fails the
// publish, whose rollback removes the copy.
func (r *Repo) copyTarget(ctx context.Context, t *txn, src, path string, want release.Digest) error {
	d, err := r.copyFile(ctx, t, src, path)
	if err != nil {
		return err
	}
	if d.size != want.Size || d.sha != want.SHA256 {
		return invalid("%s: sha256 %s (%d bytes), but manifest.json says %s (%d bytes)", src, d.sha, d.size, want.SHA256, want.Size)
	}
	return nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

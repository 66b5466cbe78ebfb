package tufrepo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/fstree"
)

// sqfsImage is a real root image (builder/squashfs) of a small tree whose
// version string and one line of a larger file differ per version.
func sqfsImage(t *testing.T, version string) []byte {
	t.Helper()
	var big strings.Builder
	for i := range 30000 {
		fmt.Fprintf(&big, "library line %d\n", i)
	}
	files := map[string]string{
		"/etc/plumb/release.json": `{"version":"` + version + `"}`,
		"/usr/lib/libbig.so":      strings.Replace(big.String(), "line 1234\n", "line 1234 of "+version+"\n", 1),
	}
	ft := fstree.New()
	for p, c := range files {
		if err := ft.Put(p, &fstree.Node{Mode: fs.FileMode(0o644), ModTime: 1000, Size: int64(len(c)), Source: fstree.Bytes([]byte(c))}); err != nil {
			t.Fatal(err)
		}
	}
	ft.SetTimes(1000, false)
	p := filepath.Join(t.TempDir(), "img.sqfs")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := squashfs.Write(t.Context(), f, ft, squashfs.Options{ModTime: 1000, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishDeltas: publish makes deltas from the K newest older releases
// of the hardware, as hashed target files with delta facts; each bundle
// turns its base's image into the release's; an older release that is not
// a root image this encoder reads is skipped, and the publish succeeds.
func TestPublishDeltas(t *testing.T) {
	r := newRepo(t, Options{})
	images := map[string][]byte{"0.9.0": randomBytes(t, 8192)} // not a squashfs: no delta from it
	for _, v := range []string{"1.0.0", "1.1.0", "2.0.0"} {
		images[v] = sqfsImage(t, v)
	}
	for _, v := range []string{"0.9.0", "1.0.0", "1.1.0"} {
		if _, err := r.Publish(t.Context(), fakeBuild(t, v, images[v]), PublishOptions{Deltas: 5}); err != nil {
			t.Fatalf("Publish %s: %v", v, err)
		}
	}
	// 2.0.0 with K=2: from 1.1.0 and 1.0.0, not from 0.9.0.
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", images["2.0.0"]), PublishOptions{Deltas: 2}); err != nil {
		t.Fatal(err)
	}
	rels, err := r.Releases()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rel := range rels {
		if rel.Facts.Kind != release.KindDelta {
			continue
		}
		got = append(got, rel.Path)
		df := rel.Facts
		old := images[df.From]
		base := sha(old)
		if rel.Path != release.DeltaPath(hw, df.Version, df.From) {
			t.Errorf("delta facts say %s from %s, but it lives at %s", df.Version, df.From, rel.Path)
		}
		if df.BaseSHA256 != base {
			t.Errorf("%s: base_sha256 %s, want the sha256 of %s's image %s", rel.Path, df.BaseSHA256, df.From, base)
		}
		want := images[df.Version]
		if df.Rootfs != (release.Digest{SHA256: sha(want), Size: int64(len(want))}) {
			t.Errorf("%s: rootfs %+v, want the full image's digest", rel.Path, df.Rootfs)
		}
		// The target file is named by its hash and applies.
		files, _ := filepath.Glob(filepath.Join(r.TargetsDir(), hw, df.Version, "*.from-"+df.From+".delta"))
		if len(files) != 1 {
			t.Fatalf("%s: files %q, want one", rel.Path, files)
		}
		bundle, _ := os.ReadFile(files[0])
		if filepath.Base(files[0]) != sha(bundle)+".from-"+df.From+".delta" || int64(len(bundle)) != rel.Length {
			t.Errorf("%s: file %s of %d bytes, want named by its sha256 %s, %d bytes", rel.Path, files[0], len(bundle), sha(bundle), rel.Length)
		}
		var out bytes.Buffer
		if _, err := wire.Apply(t.Context(), &out, bytes.NewReader(old), int64(len(old)), bytes.NewReader(bundle)); err != nil {
			t.Errorf("%s: Apply: %v", rel.Path, err)
		} else if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: Apply gives other bytes than %s's image", rel.Path, df.Version)
		}
		t.Logf("%s: %d bytes for a %d-byte image", rel.Path, len(bundle), len(want))
	}
	slices.Sort(got)
	want := []string{
		release.DeltaPath(hw, "1.1.0", "1.0.0"),
		release.DeltaPath(hw, "2.0.0", "1.0.0"),
		release.DeltaPath(hw, "2.0.0", "1.1.0"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("delta targets %q, want %q", got, want)
	}

	// Publishing again with another rollout re-uses the bundles and
	// updates their facts.
	fifty := 50
	before, _ := filepath.Glob(filepath.Join(r.TargetsDir(), hw, "2.0.0", "*.delta"))
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", images["2.0.0"]), PublishOptions{Deltas: 2, Rollout: &fifty}); err != nil {
		t.Fatal(err)
	}
	after, _ := filepath.Glob(filepath.Join(r.TargetsDir(), hw, "2.0.0", "*.delta"))
	if !slices.Equal(before, after) {
		t.Errorf("delta files %q after a re-publish, want the same %q", after, before)
	}
	rels, _ = r.Releases()
	for _, rel := range rels {
		if rel.Facts.Version == "2.0.0" && rel.Facts.Rollout != 50 {
			t.Errorf("%s: rollout %d after re-publishing at 50", rel.Path, rel.Facts.Rollout)
		}
	}
}

// TestPublishDeltasRollback: a publish that fails after making its deltas
// leaves the repository as it was, bundles included.
func TestPublishDeltasRollback(t *testing.T) {
	r := newRepo(t, Options{})
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", sqfsImage(t, "1.0.0")), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(r.metaPath("3.snapshot.json"), 0o755) // publish #2 writes 3.snapshot.json
	before := treeHash(t, r.Dir())
	if _, err := r.Publish(t.Context(), fakeBuild(t, "2.0.0", sqfsImage(t, "2.0.0")), PublishOptions{Deltas: 3}); err == nil {
		t.Fatal("Publish succeeded, want an error")
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("the failed publish changed the repository")
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

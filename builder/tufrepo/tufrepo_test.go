package tufrepo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/release"
)

const hw = "qemu-x86_64"

// fakeBuild writes a build directory as plumb build would lay it out; the
// image bytes are random (publishing does not look inside them).
func fakeBuild(t *testing.T, version string, image []byte) string {
	t.Helper()
	dir := t.TempDir()
	digest := func(name string, data []byte) builder.Digest {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		return builder.Digest{Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
	}
	rootfs := digest(builder.RootfsFile, image)
	kernel := digest(builder.KernelFile, []byte("kernel "+version))
	initrd := digest(builder.InitrdFile, []byte("initrd "+version))
	uuid := "0b7e4c1a-0000-4000-8000-000000000002"
	m := builder.Manifest{
		Name: "demo", Version: version, Hardware: hw, Channel: "stable", KernelRelease: "6.1.0-56-cloud-amd64",
		Cmdline:   bootentry.Entry{Version: version, Slot: "a", PartUUID: uuid, Cmdline: "console=ttyS0 quiet"}.Options(),
		Artifacts: []builder.Artifact{{Name: builder.RootfsFile, Size: rootfs.Size, SHA256: rootfs.SHA256}},
		Kernel:    kernel, Initrd: initrd,
		Partitions: []builder.Partition{{Index: 2, Name: "plumb-root-a", PartUUID: uuid}},
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, builder.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newRepo(t *testing.T, opts Options) *Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := Init(t.Context(), dir, opts); err != nil {
		t.Fatalf("Init: %v", err)
	}
	r, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// serve serves DIR/repository over HTTPS on 127.0.0.1.
func serve(t *testing.T, r *Repo) *httptest.Server {
	srv := httptest.NewTLSServer(http.FileServer(http.Dir(filepath.Join(r.Dir(), repoDir))))
	t.Cleanup(srv.Close)
	return srv
}

// ctxFetcher is a fetcher.Fetcher bound to a context, over the test
// server's client.
type ctxFetcher struct {
	ctx context.Context
	c   *http.Client
}

func (f ctxFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: u}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: longer than %d", u, maxLength)}
	}
	return data, nil
}

// client is go-tuf's own updater trusting trustedRoot, with an optional
// cache directory ("" disables the cache) and reference time.
func client(t *testing.T, srv *httptest.Server, trustedRoot []byte, cache string, at time.Time) *updater.Updater {
	t.Helper()
	cfg, err := config.New(srv.URL+"/metadata/", trustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = srv.URL + "/targets/"
	cfg.Fetcher = ctxFetcher{t.Context(), srv.Client()}
	if cache == "" {
		cfg.DisableLocalCache = true
	} else {
		cfg.LocalMetadataDir = cache
		cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	}
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !at.IsZero() {
		u.UnsafeSetRefTime(at)
	}
	return u
}

func readMeta(t *testing.T, r *Repo, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(r.metaPath(name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// treeHash hashes every path, mode and file content under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == lockFile {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", rel, fi.Mode())
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkTarget looks up (refreshing u on first use) and downloads version's image, checking bytes
// and facts.
func checkTarget(t *testing.T, u *updater.Updater, version string, image []byte, want release.Facts) {
	t.Helper()
	tf, err := u.GetTargetInfo(release.TargetPath(hw, version))
	if err != nil {
		t.Fatalf("GetTargetInfo(%s): %v", version, err)
	}
	got, err := release.Parse(*tf.Custom)
	if err != nil {
		t.Fatalf("custom of %s: %v", version, err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("facts of %s = %+v, want %+v", version, *got, want)
	}
	_, data, err := u.DownloadTarget(tf, filepath.Join(t.TempDir(), "img"), "")
	if err != nil {
		t.Fatalf("DownloadTarget(%s): %v", version, err)
	}
	if !bytes.Equal(data, image) {
		t.Errorf("downloaded %s: %d bytes differ from the published %d", version, len(data), len(image))
	}
}

func wantFacts(version, channel string, rollout int, image []byte) release.Facts {
	s := sha256.Sum256(image)
	k := sha256.Sum256([]byte("kernel " + version))
	i := sha256.Sum256([]byte("initrd " + version))
	return release.Facts{
		Kind: release.KindFull, Name: "demo", Hardware: hw, Version: version, Channel: channel, Rollout: rollout,
		KernelRelease: "6.1.0-56-cloud-amd64", Cmdline: "console=ttyS0 quiet",
		Rootfs: release.Digest{SHA256: hex.EncodeToString(s[:]), Size: int64(len(image))},
		Kernel: release.Digest{SHA256: hex.EncodeToString(k[:]), Size: int64(len("kernel " + version))},
		Initrd: release.Digest{SHA256: hex.EncodeToString(i[:]), Size: int64(len("initrd " + version))},
	}
}

func TestInitLayout(t *testing.T) {
	r := newRepo(t, Options{})
	for _, role := range roles {
		fi, err := os.Stat(r.keyPath(role))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s.key mode = %v, want 0600", role, got)
		}
	}
	for _, name := range []string{"1.root.json", "root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"} {
		if _, err := os.Stat(r.metaPath(name)); err != nil {
			t.Errorf("metadata %s: %v", name, err)
		}
	}
	if !bytes.Equal(readMeta(t, r, "1.root.json"), readMeta(t, r, "root.json")) {
		t.Error("root.json differs from 1.root.json")
	}
	t.Logf("timestamp.json: %d bytes", len(readMeta(t, r, "timestamp.json")))

	// A non-empty directory is refused and left alone.
	before := treeHash(t, r.Dir())
	err := Init(t.Context(), r.Dir(), Options{})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Init(non-empty) = %v, want ErrInvalid", err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("Init(non-empty) changed the directory")
	}
	// An empty repository refreshes in a client (no targets).
	u := client(t, serve(t, r), readMeta(t, r, "1.root.json"), "", time.Time{})
	if err := u.Refresh(); err != nil {
		t.Fatalf("client Refresh of an empty repository: %v", err)
	}
}

func TestPublishAndClient(t *testing.T) {
	r := newRepo(t, Options{})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	img1, img2 := randomBytes(t, 1<<20+7), randomBytes(t, 300_000)

	f, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img1), PublishOptions{})
	if err != nil {
		t.Fatalf("Publish 1.0.0: %v", err)
	}
	want1 := wantFacts("1.0.0", "stable", 100, img1)
	if !reflect.DeepEqual(*f, want1) {
		t.Errorf("Publish facts = %+v, want %+v", *f, want1)
	}
	checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.0.0", img1, want1)

	ten := 10
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.1.0", img2), PublishOptions{Channel: "beta", Rollout: &ten}); err != nil {
		t.Fatalf("Publish 1.1.0: %v", err)
	}
	want2 := wantFacts("1.1.0", "beta", 10, img2)
	u := client(t, srv, root1, "", time.Time{})
	checkTarget(t, u, "1.1.0", img2, want2)
	checkTarget(t, u, "1.0.0", img1, want1)

	rels, err := r.Releases()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rel := range rels {
		got = append(got, rel.Path+" "+rel.Facts.Channel)
	}
	if want := []string{hw + "/1.0.0/rootfs.sqfs stable", hw + "/1.1.0/rootfs.sqfs beta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Releases = %q, want %q", got, want)
	}

	// The same bytes again: nothing changes.
	before := treeHash(t, r.Dir())
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img1), PublishOptions{}); err != nil {
		t.Fatalf("Publish 1.0.0 again: %v", err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("publishing the same release again changed the repository")
	}

	// The same bytes, a wider rollout: the facts change, the image stays.
	full := 100
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.1.0", img2), PublishOptions{Channel: "beta", Rollout: &full}); err != nil {
		t.Fatalf("Publish 1.1.0 rollout 100: %v", err)
	}
	checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.1.0", img2, wantFacts("1.1.0", "beta", 100, img2))
}

func TestPublishConflict(t *testing.T) {
	r := newRepo(t, Options{})
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", randomBytes(t, 5000)), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, r.Dir())
	_, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", randomBytes(t, 5000)), PublishOptions{})
	if !errors.Is(err, ErrExists) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Publish(other bytes) = %v, want ErrExists", err)
	}
	t.Logf("error: %v", err)
	if treeHash(t, r.Dir()) != before {
		t.Error("a refused publish changed the repository")
	}
}

func TestPublishFailureLeavesRepository(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		sabotage func(t *testing.T, r *Repo, build string) context.Context
		invalid  bool
	}{
		{"rootfs missing", func(t *testing.T, r *Repo, build string) context.Context {
			os.Remove(filepath.Join(build, builder.RootfsFile))
			return t.Context()
		}, true},
		{"manifest missing", func(t *testing.T, r *Repo, build string) context.Context {
			os.Remove(filepath.Join(build, builder.ManifestFile))
			return t.Context()
		}, true},
		{"rootfs differs from manifest", func(t *testing.T, r *Repo, build string) context.Context {
			os.WriteFile(filepath.Join(build, builder.RootfsFile), []byte("tampered"), 0o644)
			return t.Context()
		}, true},
		{"targets dir blocked", func(t *testing.T, r *Repo, build string) context.Context {
			if err := os.WriteFile(filepath.Join(r.TargetsDir(), hw, "2.0.0"), []byte("in the way"), 0o644); err != nil {
				t.Fatal(err)
			}
			return t.Context()
		}, false},
		{"snapshot write fails", func(t *testing.T, r *Repo, build string) context.Context {
			os.Mkdir(r.metaPath("3.snapshot.json"), 0o755) // publish #2 writes 3.snapshot.json
			return t.Context()
		}, false},
		{"targets key corrupt", func(t *testing.T, r *Repo, build string) context.Context {
			os.WriteFile(r.keyPath(metadata.TARGETS), []byte("garbage"), 0o600)
			return t.Context()
		}, false},
		{"cancelled", func(t *testing.T, r *Repo, build string) context.Context { return cancelled }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, Options{})
			if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", randomBytes(t, 4096)), PublishOptions{}); err != nil {
				t.Fatal(err)
			}
			build := fakeBuild(t, "2.0.0", randomBytes(t, 200_000))
			ctx := tt.sabotage(t, r, build)
			before := treeHash(t, r.Dir())
			_, err := r.Publish(ctx, build, PublishOptions{})
			if err == nil {
				t.Fatal("Publish succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if got := errors.Is(err, ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalid) = %v, want %v", got, tt.invalid)
			}
			if treeHash(t, r.Dir()) != before {
				t.Error("the failed publish changed the repository")
			}
		})
	}
}

func TestRefreshExpiry(t *testing.T) {
	now := time.Now()
	clock := now
	r := newRepo(t, Options{Now: func() time.Time { return clock }})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	img := randomBytes(t, 10_000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	want := wantFacts("1.0.0", "stable", 100, img)

	// 36 hours later the 1-day timestamp has expired.
	clock = now.Add(36 * time.Hour)
	var expired *metadata.ErrExpiredMetadata
	if err := client(t, srv, root1, "", clock).Refresh(); !errors.As(err, &expired) {
		t.Fatalf("client Refresh 36h later = %v, want ErrExpiredMetadata", err)
	}
	tsVersion := func() int64 {
		ts, err := metadata.Timestamp().FromBytes(readMeta(t, r, timestampJS))
		if err != nil {
			t.Fatal(err)
		}
		return ts.Signed.Version
	}
	snapVersion := func() int64 {
		st, err := r.load()
		if err != nil {
			t.Fatal(err)
		}
		return st.snapshot.Signed.Version
	}
	v, sv := tsVersion(), snapVersion()
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := tsVersion(); got != v+1 {
		t.Errorf("timestamp version after Refresh = %d, want %d", got, v+1)
	}
	if got := snapVersion(); got != sv {
		t.Errorf("snapshot version after Refresh = %d, want %d (snapshot still valid)", got, sv)
	}
	checkTarget(t, client(t, srv, root1, "", clock), "1.0.0", img, want)

	// 6.5 days in, the 7-day snapshot would expire before a new timestamp.
	clock = now.Add(156 * time.Hour)
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := snapVersion(); got != sv+1 {
		t.Errorf("snapshot version after the late Refresh = %d, want %d", got, sv+1)
	}
	checkTarget(t, client(t, srv, root1, "", now.Add(7*24*time.Hour+time.Hour)), "1.0.0", img, want)
}

func TestRotate(t *testing.T) {
	r := newRepo(t, Options{})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	img := randomBytes(t, 20_000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	want := wantFacts("1.0.0", "stable", 100, img)
	// A device with a metadata cache, refreshed before any rotation.
	cache := t.TempDir()
	checkTarget(t, client(t, srv, root1, cache, time.Time{}), "1.0.0", img, want)

	for _, role := range []string{"root", "root", "root", "timestamp", "snapshot", "targets"} {
		oldKey, _ := os.ReadFile(r.keyPath(role))
		if err := r.Rotate(t.Context(), role); err != nil {
			t.Fatalf("Rotate(%s): %v", role, err)
		}
		newKey, _ := os.ReadFile(r.keyPath(role))
		if bytes.Equal(oldKey, newKey) {
			t.Errorf("Rotate(%s) left the key file unchanged", role)
		}
		if fi, _ := os.Stat(r.keyPath(role)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s.key mode = %v after rotation, want 0600", role, fi.Mode().Perm())
		}
		// A fresh device trusting only 1.root.json walks the chain.
		u := client(t, srv, root1, "", time.Time{})
		checkTarget(t, u, "1.0.0", img, want)
		// The cached device, trusting the root it last saw.
		cached, err := os.ReadFile(filepath.Join(cache, "root.json"))
		if err != nil {
			t.Fatal(err)
		}
		checkTarget(t, client(t, srv, cached, cache, time.Time{}), "1.0.0", img, want)
	}
	if !bytes.Equal(readMeta(t, r, "7.root.json"), readMeta(t, r, "root.json")) {
		t.Error("root.json is not a copy of 7.root.json after six rotations")
	}
	// Publishing after the rotations still works.
	img2 := randomBytes(t, 1000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.1", img2), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.0.1", img2, wantFacts("1.0.1", "stable", 100, img2))

	before := treeHash(t, r.Dir())
	if err := r.Rotate(t.Context(), "apps"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Rotate(apps) = %v, want ErrInvalid", err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("a refused rotation changed the repository")
	}
	// Without the (offline) root key a rotation fails and changes nothing.
	os.Rename(r.keyPath("root"), filepath.Join(t.TempDir(), "root.key"))
	before = treeHash(t, r.Dir())
	if err := r.Rotate(t.Context(), "timestamp"); err == nil {
		t.Error("Rotate(timestamp) without root.key succeeded")
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("a failed rotation changed the repository")
	}
}

// TestPublishMeasured: the build's reference values reach the release
// facts unchanged.
func TestPublishMeasured(t *testing.T) {
	build := fakeBuild(t, "1.0.0", randomBytes(t, 4096))
	p := filepath.Join(build, builder.ManifestFile)
	m, err := builder.ReadManifest(p)
	if err != nil {
		t.Fatal(err)
	}
	h := func(c string) string { return strings.Repeat(c, 64) }
	m.Measured = &release.Measured{Bootloader: h("1"), Kernel: h("2"), Initrd: h("3"), PCR15: h("4"),
		Cmdline: map[string]string{"a": `initrd=\plumb\a\initrd.img root=PARTUUID=x ro plumb.slot=a`, "b": `initrd=\plumb\b\initrd.img root=PARTUUID=y ro plumb.slot=b`}}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t, Options{})
	if _, err := r.Publish(t.Context(), build, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rs, err := r.Releases()
	if err != nil || len(rs) != 1 {
		t.Fatalf("Releases = %v, %v", rs, err)
	}
	if got := rs[0].Facts.Measured; !reflect.DeepEqual(got, m.Measured) {
		t.Errorf("published measured = %+v, want %+v", got, m.Measured)
	}
}

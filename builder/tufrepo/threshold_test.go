package tufrepo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/release"
)

func TestKeyFileIndex(t *testing.T) {
	tests := []struct {
		name string
		want int
		ok   bool
	}{
		{"targets.key", 1, true},
		{"targets-2.key", 2, true},
		{"targets-10.key", 10, true},
		{"targets-1.key", 0, false},
		{"targets-02.key", 0, false},
		{"targets-x.key", 0, false},
		{"targets-2.key.bak", 0, false},
		{"snapshot.key", 0, false},
		{"targets.key~", 0, false},
	}
	for _, tt := range tests {
		got, ok := keyFileIndex("targets", tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("keyFileIndex(targets, %q) = %d, %v, want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		if ok {
			if back := keyFileName("targets", got); back != tt.name {
				t.Errorf("keyFileName(targets, %d) = %q, want %q", got, back, tt.name)
			}
		}
	}
}

func TestThresholdOptions(t *testing.T) {
	tests := []struct {
		thr  map[string]int
		want string
	}{
		{map[string]int{"bogus": 1}, `threshold: expected a role (root, targets, snapshot, timestamp, apps), got "bogus"`},
		{map[string]int{"root": 0}, "threshold[root]: expected 1..10 keys, got 0"},
		{map[string]int{"targets": 11}, "threshold[targets]: expected 1..10 keys, got 11"},
	}
	for _, tt := range tests {
		dir := filepath.Join(t.TempDir(), "repo")
		err := Init(t.Context(), dir, Options{Threshold: tt.thr})
		if !errors.Is(err, ErrInvalid) || err.Error() != tt.want {
			t.Errorf("Init(threshold %v) = %v, want %q (ErrInvalid)", tt.thr, err, tt.want)
		}
		if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("Init(threshold %v) left %s behind", tt.thr, dir)
		}
	}
}

// rootRoles returns Keys by role.
func rootRoles(t *testing.T, r *Repo) map[string]RoleKeys {
	t.Helper()
	ks, err := r.Keys()
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	m := map[string]RoleKeys{}
	for _, rk := range ks {
		m[rk.Role] = rk
	}
	return m
}

// keyFileSet returns the names of the files in DIR/keys.
func keyFileSet(t *testing.T, r *Repo) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(r.Dir(), keysDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestThresholds(t *testing.T) {
	r := newRepo(t, Options{Threshold: map[string]int{"root": 2, "targets": 2}})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")

	wantFiles := "apps.key root-2.key root.key snapshot.key targets-2.key targets.key timestamp.key"
	if got := strings.Join(keyFileSet(t, r), " "); got != wantFiles {
		t.Errorf("key files = %q, want %q", got, wantFiles)
	}
	roles := rootRoles(t, r)
	for role, want := range map[string]int{"root": 2, "targets": 2, "snapshot": 1, "timestamp": 1} {
		rk := roles[role]
		if rk.Threshold != want || len(rk.Keys) != want {
			t.Errorf("%s: threshold %d with %d keys, want %d of %d", role, rk.Threshold, len(rk.Keys), want, want)
		}
		for _, k := range rk.Keys {
			if k.File == "" {
				t.Errorf("%s key %s: no key file found", role, k.ID)
			}
		}
	}
	root, err := metadata.Root().FromBytes(root1)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(root.Signatures); got != 2 {
		t.Errorf("1.root.json has %d signatures, want 2", got)
	}

	// Publish, and a client trusting 1.root.json verifies it.
	img := randomBytes(t, 50_000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img), PublishOptions{}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	want := wantFacts("1.0.0", "stable", 100, img)
	cache := t.TempDir()
	checkTarget(t, client(t, srv, root1, cache, time.Time{}), "1.0.0", img, want)
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.targets.Signatures); got != 2 {
		t.Errorf("targets has %d signatures, want 2", got)
	}

	// One targets key missing: publish fails with one line and changes nothing.
	aside := filepath.Join(t.TempDir(), "targets-2.key")
	if err := os.Rename(r.keyPathN("targets", 2), aside); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, r.Dir())
	_, err = r.Publish(t.Context(), fakeBuild(t, "2.0.0", randomBytes(t, 100_000)), PublishOptions{})
	wantErr := "signing targets: 1 of its keys present in " + filepath.Join(r.Dir(), "keys") + ", 2 needed (threshold): copy in the missing key files (keys/targets-2.key)"
	if err == nil || err.Error() != wantErr {
		t.Errorf("Publish with one targets key = %v, want %q", err, wantErr)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("the failed publish changed the repository")
	}
	// Refresh (timestamp only) does not need the targets keys.
	if err := r.Refresh(t.Context()); err != nil {
		t.Errorf("Refresh without a targets key: %v", err)
	}
	if err := os.Rename(aside, r.keyPathN("targets", 2)); err != nil {
		t.Fatal(err)
	}

	// One root key missing: rotation fails and changes nothing.
	aside = filepath.Join(t.TempDir(), "root.key")
	if err := os.Rename(r.keyPath("root"), aside); err != nil {
		t.Fatal(err)
	}
	before = treeHash(t, r.Dir())
	err = r.Rotate(t.Context(), "snapshot")
	if err == nil || !strings.Contains(err.Error(), "signing root: 1 of its keys present") || !strings.Contains(err.Error(), "2 needed") {
		t.Errorf("Rotate(snapshot) with one root key = %v, want a root threshold error", err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("the failed rotation changed the repository")
	}
	if err := os.Rename(aside, r.keyPath("root")); err != nil {
		t.Fatal(err)
	}

	// Rotate root (2 of 2), then targets (2 of 2): fresh and cached clients
	// walk the chain.
	for _, role := range []string{"root", "targets", "root"} {
		oldIDs := rootRoles(t, r)[role].Keys
		if err := r.Rotate(t.Context(), role); err != nil {
			t.Fatalf("Rotate(%s): %v", role, err)
		}
		rk := rootRoles(t, r)[role]
		if rk.Threshold != 2 || len(rk.Keys) != 2 {
			t.Errorf("%s after rotation: threshold %d with %d keys, want 2 of 2", role, rk.Threshold, len(rk.Keys))
		}
		for _, k := range rk.Keys {
			for _, o := range oldIDs {
				if k.ID == o.ID {
					t.Errorf("Rotate(%s) kept key %s", role, k.ID)
				}
			}
			if k.File == "" {
				t.Errorf("%s key %s: no key file after rotation", role, k.ID)
			}
		}
		if got := strings.Join(keyFileSet(t, r), " "); got != wantFiles {
			t.Errorf("key files after Rotate(%s) = %q, want %q", role, got, wantFiles)
		}
		checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.0.0", img, want)
		cached, err := os.ReadFile(filepath.Join(cache, "root.json"))
		if err != nil {
			t.Fatal(err)
		}
		checkTarget(t, client(t, srv, cached, cache, time.Time{}), "1.0.0", img, want)
	}
	// The root rotations were signed by the 2 old and the 2 new root keys.
	r3, err := metadata.Root().FromBytes(readMeta(t, r, "3.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r3.Signatures); got != 2 {
		t.Errorf("3.root.json (targets rotation) has %d signatures, want 2", got)
	}
	r4, err := metadata.Root().FromBytes(readMeta(t, r, "4.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r4.Signatures); got != 4 {
		t.Errorf("4.root.json (root rotation) has %d signatures, want 4", got)
	}

	// Publishing with the rotated keys still works.
	img2 := randomBytes(t, 3000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.1", img2), PublishOptions{}); err != nil {
		t.Fatalf("Publish after rotations: %v", err)
	}
	checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.0.1", img2, wantFacts("1.0.1", "stable", 100, img2))
}

// TestThresholdNotMet hand-crafts targets metadata signed by one of its two
// required keys, with a correct snapshot and timestamp above it: go-tuf's
// client and Open refuse it.
func TestThresholdNotMet(t *testing.T) {
	r := newRepo(t, Options{Threshold: map[string]int{"targets": 2}})
	srv := serve(t, r)
	root1 := readMeta(t, r, "1.root.json")
	img := randomBytes(t, 2000)
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", img), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	checkTarget(t, client(t, srv, root1, "", time.Time{}), "1.0.0", img, wantFacts("1.0.0", "stable", 100, img))

	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := r.roleKeys(st.root, metadata.TARGETS)
	if err != nil || len(keys) != 2 {
		t.Fatalf("targets keys: %d, %v; want 2", len(keys), err)
	}
	delete(st.targets.Signed.Targets, release.TargetPath(hw, "1.0.0"))
	st.targets.Signed.Version++
	st.targets.ClearSignatures()
	if err := st.sign(metadata.TARGETS, keys[0].signer); err != nil {
		t.Fatal(err)
	}
	st.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(st.targets.Signed.Version)
	st.snapshot.Signed.Version++
	st.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(st.snapshot.Signed.Version)
	st.timestamp.Signed.Version++
	for _, role := range []string{metadata.SNAPSHOT, metadata.TIMESTAMP} {
		ss, err := r.roleSigners(st.root, role)
		if err != nil {
			t.Fatal(err)
		}
		if role == metadata.SNAPSHOT {
			st.snapshot.ClearSignatures()
		} else {
			st.timestamp.ClearSignatures()
		}
		for _, s := range ss {
			if err := st.sign(role, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, md := range map[string]interface{ ToBytes(bool) ([]byte, error) }{
		versioned(st.targets.Signed.Version, metadata.TARGETS):   st.targets,
		versioned(st.snapshot.Signed.Version, metadata.SNAPSHOT): st.snapshot,
		timestampJS: st.timestamp,
	} {
		data, err := md.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFile(r.metaPath(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	err = client(t, srv, root1, "", time.Time{}).Refresh()
	var unsigned *metadata.ErrUnsignedMetadata
	if !errors.As(err, &unsigned) || !strings.Contains(err.Error(), "targets failed, not enough signatures, got 1, want 2") {
		t.Errorf("client Refresh of targets signed by 1 of 2 keys = %v, want ErrUnsignedMetadata (got 1, want 2)", err)
	}
	if _, err := Open(r.Dir(), Options{}); err == nil || !strings.Contains(err.Error(), "not enough signatures") {
		t.Errorf("Open of targets signed by 1 of 2 keys = %v, want a signature error", err)
	}
}

// TestForeignKeyFile: a key file that root.json does not list for its role
// is refused with its name, before anything is written.
func TestForeignKeyFile(t *testing.T) {
	r := newRepo(t, Options{})
	other := newRepo(t, Options{})
	data, err := os.ReadFile(other.keyPath("targets"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.keyPathN("targets", 2), data, 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, r.Dir())
	_, err = r.Publish(t.Context(), fakeBuild(t, "1.0.0", randomBytes(t, 100)), PublishOptions{})
	if err == nil || !strings.Contains(err.Error(), r.keyPathN("targets", 2)+": key ") || !strings.Contains(err.Error(), "is not a targets key of root.json version 1") {
		t.Errorf("Publish with a foreign targets-2.key = %v, want an error naming it", err)
	}
	if treeHash(t, r.Dir()) != before {
		t.Error("the failed publish changed the repository")
	}
	// The same key copied under a second name counts once.
	if err := os.WriteFile(r.keyPathN("targets", 2), mustRead(t, r.keyPath("targets")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(t.Context(), fakeBuild(t, "1.0.0", randomBytes(t, 100)), PublishOptions{}); err != nil {
		t.Errorf("Publish with a duplicate key file: %v", err)
	}
	// Rotating targets removes the extra file.
	if err := r.Rotate(t.Context(), "targets"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.keyPathN("targets", 2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("targets-2.key after rotating a 1-key role: %v, want removed", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(data)
}

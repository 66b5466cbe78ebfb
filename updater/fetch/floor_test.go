package fetch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// TestTornCacheReplay: the device trusted timestamp and snapshot version
// 3; a power cut tears its metadata cache; the network replays version 1
// of timestamp and snapshot (validly signed, not expired). Starting again
// from the image's root.json must still refuse them, with one line, and
// keep refusing until the repository serves metadata as new as before.
func TestTornCacheReplay(t *testing.T) {
	f := newFixture(t)
	meta := filepath.Join(f.repo.Dir, "metadata")
	oldTS, err := os.ReadFile(filepath.Join(meta, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.repo.Publish()
	f.repo.Publish() // timestamp, snapshot and targets version 3
	newTS, err := os.ReadFile(filepath.Join(meta, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.client(t).Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Torn: go-tuf's files are empty or cut short; every one of them.
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".json") && n != FloorFile {
			if err := os.WriteFile(filepath.Join(f.dir, n), []byte(`{"signed":`), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Replayed: timestamp 1, which names snapshot 1 (still served, as
	// consistent snapshots keep every version).
	f.repo.Write("metadata/timestamp.json", oldTS)
	c := f.client(t)
	err = c.Refresh(t.Context())
	want := "rollback: timestamp version 1 < 3 trusted before (floor.json; the metadata cache was lost)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrVerification) {
		t.Fatalf("Refresh after a torn cache and a replayed timestamp = %v, want %q (ErrVerification)", err, want)
	}
	if ts, err := c.Targets(); err == nil {
		t.Fatalf("Targets after the refusal = %v, want an error", ts)
	}
	// Again, as after a reboot: still refused.
	if err := f.client(t).Refresh(t.Context()); err == nil || err.Error() != want {
		t.Fatalf("second Refresh = %v, want %q", err, want)
	}

	// The repository serves its current metadata again: accepted.
	f.repo.Write("metadata/timestamp.json", newTS)
	c = f.client(t)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh of the current metadata: %v", err)
	}
	if ts, err := c.Targets(); err != nil || len(ts) != 1 {
		t.Errorf("Targets = %v, %v; want one target", ts, err)
	}
}

// TestFloorUnreadable: a record that is not what plumbd writes is refused
// with one line, not guessed at.
func TestFloorUnreadable(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(f.dir, FloorFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.client(t).Refresh(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "rollback record "+filepath.Join(f.dir, FloorFile)+": expected the JSON plumbd writes") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Refresh = %v", err)
	}
}

// TestRecordRelease keeps the newest release committed.
func TestRecordRelease(t *testing.T) {
	c := newFixture(t).client(t)
	for _, v := range []string{"1.2.0", "1.10.0", "1.9.0"} {
		if err := c.RecordRelease(v); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.RecordedRelease(); err != nil || got != "1.10.0" {
		t.Fatalf("RecordedRelease = %q, %v; want 1.10.0", got, err)
	}
}

// TestFloorDelegatedRole: a delegated role's version is recorded when it is
// loaded, and an older one is refused like a top-level role's.
func TestFloorDelegatedRole(t *testing.T) {
	c := newFixture(t).client(t)
	exp := time.Now().Add(time.Hour)
	ts := trustedmetadata.TrustedMetadata{
		Root: metadata.Root(exp), Timestamp: metadata.Timestamp(exp), Snapshot: metadata.Snapshot(exp),
		Targets: map[string]*metadata.Metadata[metadata.TargetsType]{metadata.TARGETS: metadata.Targets(exp), AppsRole: metadata.Targets(exp)},
	}
	ts.Targets[AppsRole].Signed.Version = 5
	if err := c.raiseFloor(ts); err != nil {
		t.Fatal(err)
	}
	ts.Targets[AppsRole].Signed.Version = 3
	err := c.raiseFloor(ts)
	want := "rollback: apps version 3 < 5 trusted before (floor.json; the metadata cache was lost)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrVerification) {
		t.Fatalf("raiseFloor = %v, want %q", err, want)
	}
	delete(ts.Targets, AppsRole) // not loaded yet: nothing to compare, the record keeps 5
	if err := c.raiseFloor(ts); err != nil {
		t.Fatal(err)
	}
	fl, err := c.readFloor()
	if err != nil || fl.Targets[AppsRole] != 5 {
		t.Fatalf("record = %+v, %v; want apps 5 kept", fl, err)
	}
}

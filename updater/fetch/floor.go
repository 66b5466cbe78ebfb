package fetch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// FloorFile, in MetadataDir, records the highest version of every role the
// client ever trusted (root, timestamp, snapshot, targets and each
// delegated role) and the newest release the device committed. It is
// written on its own, atomically and fsync'd (atomicfile), after the cache
// it describes is durable, and it survives dropCache: go-tuf's cache is
// several files written without fsync and can be torn by a power cut, and
// starting again from the image's root.json would otherwise forget every
// version trusted since and accept an older, still unexpired timestamp or
// snapshot replayed by an attacker. Metadata older than the record is
// refused (ErrVerification), as go-tuf refuses metadata older than its
// cache.
const FloorFile = "floor.json"

// floor is FloorFile's content.
type floor struct {
	Root      int64            `json:"root"`
	Timestamp int64            `json:"timestamp"`
	Snapshot  int64            `json:"snapshot"`
	Targets   map[string]int64 `json:"targets,omitempty"` // "targets" and delegated roles, by name
	Release   string           `json:"release,omitempty"` // the newest release committed
}

func (c *Client) floorPath() string { return filepath.Join(c.dir, FloorFile) }

// readFloor reads the record; a missing one is all zeros (a new device).
// An unreadable one is an error: it is written atomically, so it cannot be
// torn, and guessing would reopen the window it closes.
func (c *Client) readFloor() (floor, error) {
	var fl floor
	b, err := os.ReadFile(c.floorPath())
	if errors.Is(err, os.ErrNotExist) {
		return fl, nil
	}
	if err != nil {
		return fl, fmt.Errorf("rollback record: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fl); err != nil {
		return fl, fmt.Errorf("rollback record %s: expected the JSON plumbd writes, got: %v", c.floorPath(), err)
	}
	return fl, nil
}

func (c *Client) writeFloor(fl floor) error {
	b, err := json.Marshal(fl)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(c.floorPath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("rollback record: %w", err)
	}
	return nil
}

// raiseFloor refuses trusted metadata older than the record, then raises
// the record to it (written only when something rose). Called with c.mu
// held, after go-tuf verified ts and after the cache is synced.
func (c *Client) raiseFloor(ts trustedmetadata.TrustedMetadata) error {
	fl, err := c.readFloor()
	if err != nil {
		return err
	}
	if fl.Targets == nil {
		fl.Targets = map[string]int64{}
	}
	// Each role's version and where the record keeps it: the top-level
	// roles in their fields, "targets" and the delegations loaded so far
	// in Targets.
	type role struct {
		name string
		got  int64
		rec  *int64
	}
	roles := []role{{"root", ts.Root.Signed.Version, &fl.Root}}
	if ts.Timestamp != nil {
		roles = append(roles, role{"timestamp", ts.Timestamp.Signed.Version, &fl.Timestamp})
	}
	if ts.Snapshot != nil {
		roles = append(roles, role{"snapshot", ts.Snapshot.Signed.Version, &fl.Snapshot})
	}
	var names []string
	for name := range ts.Targets {
		names = append(names, name)
	}
	sort.Strings(names) // the same message every time
	targets := make(map[string]*int64, len(names))
	for _, name := range names {
		v := fl.Targets[name]
		targets[name] = &v
		roles = append(roles, role{name, ts.Targets[name].Signed.Version, &v})
	}
	changed := false
	for _, r := range roles {
		if r.got < *r.rec {
			return refuse(nil, "rollback: %s version %d < %d trusted before (%s; the metadata cache was lost)", r.name, r.got, *r.rec, FloorFile)
		}
		if r.got > *r.rec {
			*r.rec, changed = r.got, true
		}
	}
	for name, v := range targets {
		fl.Targets[name] = *v
	}
	if !changed {
		return nil
	}
	return c.writeFloor(fl)
}

// RecordedRelease is the newest release recorded by RecordRelease ("" when
// none).
func (c *Client) RecordedRelease() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl, err := c.readFloor()
	return fl.Release, err
}

// RecordRelease records version as committed, if it is newer than the
// release recorded. The agent calls it after a commit and refuses releases
// older than the record, whatever its state file says.
func (c *Client) RecordRelease(version string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl, err := c.readFloor()
	if err != nil {
		return err
	}
	if fl.Release != "" && release.CompareVersions(version, fl.Release) <= 0 {
		return nil
	}
	fl.Release = version
	return c.writeFloor(fl)
}

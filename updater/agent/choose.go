package agent

import (
	"encoding/json"
	"hash/fnv"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/updater/release"
)

// Candidate is a release target the agent may install.
type Candidate struct {
	Path  string
	Facts *release.Facts
}

// Want describes the device for release choice.
type Want struct {
	Hardware string
	Channel  string
	Running  string          // running version
	Bad      map[string]bool // versions that failed here
	DeviceID string          // for staged rollouts
}

// Target is a trusted TUF target as the fetch client lists it.
type Target struct {
	Path   string
	Custom json.RawMessage
}

// Choose returns the newest full release for the device's hardware and
// channel that is newer than the running one, not marked bad, and inside
// its rollout; nil when there is none. Targets whose facts do not parse are
// skipped and returned in skipped with the reason.
func Choose(targets []Target, w Want) (best *Candidate, skipped map[string]error) {
	skipped = map[string]error{}
	for _, t := range targets {
		if len(t.Custom) == 0 {
			continue
		}
		f, err := release.Parse(t.Custom)
		if err != nil {
			skipped[t.Path] = err
			continue
		}
		if f.Kind != release.KindFull || f.Hardware != w.Hardware || f.Channel != w.Channel {
			continue
		}
		if t.Path != release.TargetPath(f.Hardware, f.Version) {
			continue // facts must match where the target lives
		}
		if recipe.CompareVersions(f.Version, w.Running) <= 0 || w.Bad[f.Version] {
			continue
		}
		if !InRollout(w.DeviceID, f.Version, f.Rollout) {
			continue
		}
		if best == nil || recipe.CompareVersions(f.Version, best.Facts.Version) > 0 {
			best = &Candidate{Path: t.Path, Facts: f}
		}
	}
	return best, skipped
}

// InRollout reports whether a device takes part in a staged rollout of
// version at percent: fnv32a(deviceID + "/" + version) mod 100 < percent.
// Every device decides alone, so the server stays static.
func InRollout(deviceID, version string, percent int) bool {
	if percent >= 100 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(deviceID + "/" + version))
	return int(h.Sum32()%100) < percent
}

package release

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
)

// Candidate is a release target the agent may install: a full release, or
// a delta bundle that produces one.
type Candidate struct {
	Path   string
	Facts  *Facts
	Length int64  // trusted length of the target (TUF)
	SHA256 string // trusted sha256 of the target (TUF), lower-case hex
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
	Length int64  // trusted length
	SHA256 string // trusted sha256, lower-case hex
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
		f, err := Parse(t.Custom)
		if err != nil {
			skipped[t.Path] = err
			continue
		}
		if f.Kind != KindFull || f.Hardware != w.Hardware || f.Channel != w.Channel {
			continue
		}
		if t.Path != TargetPath(f.Hardware, f.Version) {
			continue // facts must match where the target lives
		}
		if CompareVersions(f.Version, w.Running) <= 0 || w.Bad[f.Version] {
			continue
		}
		if !InRollout(w.DeviceID, f.Version, f.Rollout) {
			continue
		}
		if best == nil || CompareVersions(f.Version, best.Facts.Version) > 0 {
			best = &Candidate{Path: t.Path, Facts: f, Length: t.Length, SHA256: t.SHA256}
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

// ChooseDelta returns the delta target that turns the running release into
// full (a candidate of Choose), or nil and why there is none. The running
// image's sha256 is the trusted hash of the running version's full target:
// the delta's base_sha256 must equal it, its from the running version, and
// its rootfs the full release's image.
func ChooseDelta(targets []Target, full *Candidate, w Want) (*Candidate, string) {
	hw, ver := full.Facts.Hardware, full.Facts.Version
	runPath, deltaPath := TargetPath(hw, w.Running), DeltaPath(hw, ver, w.Running)
	var run, dt *Target
	for i, t := range targets {
		switch t.Path {
		case runPath:
			run = &targets[i]
		case deltaPath:
			dt = &targets[i]
		}
	}
	switch {
	case dt == nil:
		return nil, "no delta from " + w.Running
	case run == nil:
		return nil, "the running release " + w.Running + " is not in the repository: its image sha256 is unknown"
	}
	f, err := Parse(dt.Custom)
	switch {
	case err != nil:
		return nil, err.Error()
	case f.Kind != KindDelta || f.Hardware != hw || f.Version != ver || f.From != w.Running:
		return nil, fmt.Sprintf("%s: facts say kind %s, %s %s from %s", dt.Path, f.Kind, f.Hardware, f.Version, f.From)
	case f.BaseSHA256 != run.SHA256:
		return nil, fmt.Sprintf("%s: base_sha256 %s is not the running image's sha256 %s", dt.Path, f.BaseSHA256, run.SHA256)
	case f.Rootfs.SHA256 != full.SHA256 || f.Rootfs.Size != full.Length:
		return nil, fmt.Sprintf("%s: produces sha256 %s (%d bytes), not the full release's %s (%d bytes)", dt.Path, f.Rootfs.SHA256, f.Rootfs.Size, full.SHA256, full.Length)
	}
	return &Candidate{Path: dt.Path, Facts: f, Length: dt.Length, SHA256: dt.SHA256}, ""
}

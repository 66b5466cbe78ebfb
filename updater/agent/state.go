package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Phases of an update, in order. Each is persisted before the work of the
// next begins, so a restarted plumbd knows where it was.
const (
	PhaseIdle        = "idle"        // nothing in flight
	PhaseDownloading = "downloading" // writing the inactive slot (full) or the bundle file (delta)
	PhaseApplying    = "applying"    // delta bundle downloaded and verified; writing the inactive slot from it
	PhaseVerified    = "verified"    // slot written, length and sha256 match TUF
	PhaseEntry       = "entry"       // boot files and trial entry on the ESP
	PhaseRebooting   = "rebooting"   // waiting for (or in) the reboot
	PhaseTrial       = "trial"       // booted the new slot, checks running
	PhaseCommitted   = "committed"   // the new slot is permanent
)

// Methods of an update.
const (
	MethodDelta = "delta"
	MethodFull  = "full"
)

// State is the agent's persisted state (DataDir/state.json).
type State struct {
	Phase   string `json:"phase"`
	Version string `json:"version,omitempty"` // release being installed
	Target  string `json:"target,omitempty"`  // its TUF target path
	Slot    string `json:"slot,omitempty"`    // the slot it goes to
	Bytes   int64  `json:"bytes,omitempty"`   // written so far (of the target, or of the slot while applying)
	Total   int64  `json:"total,omitempty"`
	// Method is how the update goes: "delta" (a bundle applied to the
	// running slot) or "full" (the whole image).
	Method string `json:"method,omitempty"`
	// Fetched counts the target bytes downloaded for this update (bundle
	// and, after a fallback, the full image).
	Fetched int64 `json:"fetched,omitempty"`
	// Fallback is why a delta was not used ("" when none was tried or it
	// worked).
	Fallback string `json:"fallback,omitempty"`

	// Facts are the TUF release facts of the release being installed, as
	// verified when it was chosen: an attested commit compares the trial
	// boot's measurements with their reference values.
	Facts *release.Facts `json:"facts,omitempty"`
	// Attestation is the verifier's last verdict on this device.
	Attestation *Attestation `json:"attestation,omitempty"`

	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"` // "ok", "no update", or the error
	// Bad maps versions that failed on this device to why; they are not
	// tried again.
	Bad map[string]string `json:"bad,omitempty"`
	// Event is the last notable thing that happened ("committed 2.0.0",
	// "rolled back from 2.0.0: boot failed").
	Event string `json:"event,omitempty"`
	// Workloads is why the last workload reconcile failed ("" after a
	// success); the containers run as before such a failure.
	Workloads string `json:"workloads_error,omitempty"`
}

// Attestation summarises the last report a verifier sent.
type Attestation struct {
	Time    time.Time `json:"time"`
	Release string    `json:"release"`
	Verdict string    `json:"verdict"`          // "passed", "failed", or "error"
	Failed  []string  `json:"failed,omitempty"` // names of the failed checks
	Error   string    `json:"error,omitempty"`  // why there is no verdict
}

// maxStateSize bounds what LoadState reads.
const maxStateSize = 1 << 20

// LoadState reads the state file; a missing file is the idle state.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &State{Phase: PhaseIdle}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading agent state: %w", err)
	}
	return ParseState(data)
}

// ParseState decodes and validates a state file's content.
func ParseState(data []byte) (*State, error) {
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("agent state: %d bytes, expected at most %d", len(data), maxStateSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	switch s.Phase {
	case PhaseIdle, PhaseDownloading, PhaseApplying, PhaseVerified, PhaseEntry, PhaseRebooting, PhaseTrial, PhaseCommitted:
	default:
		return nil, fmt.Errorf("agent state: phase: expected one of idle, downloading, applying, verified, entry, rebooting, trial, committed, got %q", s.Phase)
	}
	if s.Method != "" && s.Method != MethodDelta && s.Method != MethodFull {
		return nil, fmt.Errorf("agent state: method: expected delta or full, got %q", s.Method)
	}
	if s.Slot != "" && s.Slot != "a" && s.Slot != "b" {
		return nil, fmt.Errorf("agent state: slot: expected a or b, got %q", s.Slot)
	}
	if s.Fetched < 0 {
		return nil, fmt.Errorf("agent state: fetched: expected a count >= 0, got %d", s.Fetched)
	}
	if s.Bytes < 0 || s.Total < 0 || (s.Total > 0 && s.Bytes > s.Total) {
		return nil, fmt.Errorf("agent state: bytes %d of %d: expected 0 <= bytes <= total", s.Bytes, s.Total)
	}
	return &s, nil
}

// Save writes the state atomically (temp, fsync, rename, fsync dir).
func (s *State) Save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// MarkBad records that version failed here and why.
func (s *State) MarkBad(version, why string) {
	if s.Bad == nil {
		s.Bad = map[string]string{}
	}
	s.Bad[version] = why
}

// BadSet returns the bad versions as a set for Choose.
func (s *State) BadSet() map[string]bool {
	m := make(map[string]bool, len(s.Bad))
	for v := range s.Bad {
		m[v] = true
	}
	return m
}

package agent

import "time"

// Field is the part of the state about field operations: offline media,
// install policy, locks and hooks. It is embedded in State (its JSON
// fields sit beside the others).
type Field struct {
	// LastOnline is when the device last verified fresh metadata from the
	// network repository: the time a medium's metadata expiry is judged
	// at (docs/offline.md).
	LastOnline time.Time `json:"last_online,omitzero"`
	// Source is where the release in flight comes from: "network", or
	// "medium <device>".
	Source string `json:"source,omitempty"`
	// Waiting says what holds a ready or installed release back:
	// WaitApproval, WaitWindow or WaitLock; Reason says it in words.
	Waiting string `json:"waiting,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Approved is the version a local user approved (plumbd approve).
	Approved string `json:"approved,omitempty"`
	// Media are the last update media seen, newest last (at most
	// maxMedia).
	Media []MediumResult `json:"media,omitempty"`
	// Locks are the application locks held when the state was saved.
	Locks []LockInfo `json:"locks,omitempty"`
	// Hook is the last hook that ran, with its output.
	Hook *HookResult `json:"hook,omitempty"`
}

// What a ready release waits for.
const (
	WaitApproval = "waiting-for-approval"
	WaitWindow   = "waiting-for-window"
	WaitLock     = "waiting-for-lock"
)

// MediumResult is what happened with one update medium.
type MediumResult struct {
	Device  string    `json:"device"`
	Time    time.Time `json:"time"`
	Result  string    `json:"result"`            // "installed 2.0.0", "nothing newer", or why it was refused
	Refused bool      `json:"refused,omitempty"` // the medium failed a check
}

// maxMedia bounds State.Media.
const maxMedia = 8

// LockInfo is one held application lock.
type LockInfo struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner,omitempty"` // pid and uid of the caller that took it
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"` // the agent's maximum hold time
}

// HookResult is one hook run.
type HookResult struct {
	Stage   string    `json:"stage"`
	Path    string    `json:"path"`
	Version string    `json:"version"` // the release it ran for
	Time    time.Time `json:"time"`
	Error   string    `json:"error,omitempty"` // "" when it succeeded
	Output  string    `json:"output,omitempty"`
}

func (s *State) addMedium(m MediumResult) {
	s.Media = append(s.Media, m)
	if len(s.Media) > maxMedia {
		s.Media = s.Media[len(s.Media)-maxMedia:]
	}
}

package agent

import "github.com/plumb-os/plumb/format/release"

// withoutControl is f without its rollout control, as kept in the state
// file: it serves the attested commit only, and an agent older than waves,
// which may read the file after a rollback, refuses keys it does not know.
func withoutControl(f *release.Facts) *release.Facts {
	kept := *f
	kept.Control = release.Control{}
	return &kept
}

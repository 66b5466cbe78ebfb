package reconcile

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// StatusFile is the status's file name in Options.StateDir.
const StatusFile = "status.json"

// Status is the reconciler's state as `plumbd status` shows it.
type Status struct {
	Group     string    `json:"group,omitempty"`
	Manifest  string    `json:"manifest_sha256,omitempty"` // the applied manifest
	LastError string    `json:"last_error,omitempty"`      // of the last Apply
	Updated   time.Time `json:"updated"`
	// Stale is set by readers (plumbd status) when Updated is from before
	// the current boot: the containers have not been started again yet.
	Stale      bool              `json:"stale,omitempty"`
	Containers []ContainerStatus `json:"containers"`
}

// Status reports every supervised container, by name.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	st := Status{Group: r.group, Manifest: r.applied, LastError: r.lastErr, Updated: time.Now().UTC(), Containers: []ContainerStatus{}}
	for _, s := range r.sups {
		st.Containers = append(st.Containers, s.snapshot())
	}
	r.mu.Unlock()
	slices.SortFunc(st.Containers, func(a, b ContainerStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}

// saveStatus writes status.json (best effort: it is a report).
func (r *Reconciler) saveStatus() {
	st := r.Status()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := atomicfile.WriteFile(filepath.Join(r.opts.StateDir, StatusFile), append(b, '\n'), 0o644); err != nil {
		r.log.Warn("saving workload status", "err", err)
	}
}

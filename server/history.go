package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/plumb-os/plumb/server/store"
)

// A status report (updater/report.Body) as the server reads it. Only these
// fields drive the history; the whole body is kept as the device's last
// report.
type statusReport struct {
	Device struct {
		ID        string `json:"id"`
		PublicKey []byte `json:"public_key"`
	} `json:"device"`
	Status struct {
		Phase   string `json:"phase"` // the installer's "installing"
		Release struct {
			Version  string `json:"version"`
			Hardware string `json:"hardware"`
		} `json:"release"`
		Update *struct {
			Phase      string            `json:"phase"`
			Version    string            `json:"version"`
			Event      string            `json:"event"`
			LastResult string            `json:"last_result"`
			Bad        map[string]string `json:"bad"`
			Workloads  string            `json:"workloads_error"`
		} `json:"update"`
		Workloads *struct {
			Group      string `json:"group"`
			LastError  string `json:"last_error"`
			Containers []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				Health   string `json:"health"`
				Restarts int    `json:"restarts"`
			} `json:"containers"`
		} `json:"workloads"`
	} `json:"status"`
	Install *struct {
		Phase   string `json:"phase"`
		Version string `json:"version"`
		Error   string `json:"error"`
	} `json:"install"`
}

// Bounds on what one report may add to the history.
const (
	maxSummary       = 512 // characters of one event's summary
	maxEventsPerPost = 16
)

func clip(s string) string {
	if len(s) > maxSummary {
		return s[:maxSummary] + "…"
	}
	return s
}

// parseStatus decodes a report body; the body must be a JSON object with a
// device object.
func parseStatus(body []byte) (*statusReport, error) {
	var r statusReport
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf(`report: expected JSON {"device": {"id", "public_key"}, "status": {...}}: %v`, err)
	}
	return &r, nil
}

// workloadKey sums up the workloads' states, to notice a change.
func (r *statusReport) workloadKey() string {
	w := r.Status.Workloads
	var b strings.Builder
	if u := r.Status.Update; u != nil && u.Workloads != "" {
		b.WriteString("error: " + u.Workloads + "; ")
	}
	if w == nil {
		return b.String()
	}
	if w.LastError != "" {
		b.WriteString("error: " + w.LastError + "; ")
	}
	for i, c := range w.Containers {
		if i == 64 {
			break
		}
		b.WriteString(strings.Join(strings.Fields(c.Name+" "+c.State+" "+c.Health), " "))
		if c.Restarts > 0 {
			fmt.Fprintf(&b, " (restarts %d)", c.Restarts)
		}
		b.WriteString("; ")
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// history turns a report into the device's new state, the history entries
// it adds (what changed since prev, the device's previous report or nil)
// and the release outcomes it shows.
func history(prev *store.Device, cur *statusReport, body []byte, now time.Time) *store.Report {
	var old *statusReport
	if prev != nil && len(prev.Report) > 0 {
		old, _ = parseStatus(prev.Report)
	}
	if old == nil {
		old = &statusReport{}
	}
	rep := &store.Report{At: now, Body: body}
	if prev != nil {
		rep.Hardware, rep.Version, rep.Lifecycle, rep.UpdatePhase = prev.Hardware, prev.Version, prev.Lifecycle, prev.UpdatePhase
		rep.LastEvent, rep.WorkloadGroup, rep.Workloads = prev.LastEvent, prev.WorkloadGroup, prev.Workloads
	}
	if v := cur.Status.Release.Hardware; v != "" {
		rep.Hardware = clip(v)
	}
	if v := cur.Status.Release.Version; v != "" {
		rep.Version = clip(v)
	}
	add := func(kind, version, summary string) {
		if len(rep.Events) < maxEventsPerPost {
			rep.Events = append(rep.Events, store.Event{At: now, Kind: kind, Version: clip(version), Summary: clip(summary)})
		}
	}
	outcome := func(version, o, reason string) {
		if version != "" && rep.Hardware != "" && len(rep.Outcomes) < maxEventsPerPost {
			rep.Outcomes = append(rep.Outcomes, store.Outcome{Hardware: rep.Hardware, Version: clip(version), Outcome: o, Reason: clip(reason)})
		}
	}

	// Phase 1: the installer.
	if in := cur.Install; in != nil {
		rep.Lifecycle = "provisioning"
		rep.UpdatePhase = clip("install " + in.Phase)
		if old.Install == nil || old.Install.Phase != in.Phase || old.Install.Version != in.Version {
			s := "install: " + in.Phase
			if in.Error != "" {
				s += ": " + in.Error
			}
			add(store.EventInstall, in.Version, s)
		}
		if in.Phase == "done" && in.Version != "" {
			rep.Version = clip(in.Version)
		}
	}

	// Phase 2: the update agent.
	if u := cur.Status.Update; u != nil {
		rep.Lifecycle = "running"
		rep.UpdatePhase = clip(u.Phase)
		ou := old.Status.Update
		if ou == nil || ou.Phase != u.Phase || ou.Version != u.Version {
			s := u.Phase
			if u.Version != "" {
				s += " " + u.Version
			}
			add(store.EventUpdate, u.Version, s)
			if u.Phase == "trial" || u.Phase == "rebooting" || u.Phase == "entry" {
				outcome(u.Version, store.OutcomeTrying, "")
			}
		}
		if u.Event != "" && (ou == nil || ou.Event != u.Event) {
			rep.LastEvent = clip(u.Event)
			switch {
			case strings.HasPrefix(u.Event, "committed "):
				v := strings.TrimPrefix(u.Event, "committed ")
				add(store.EventCommitted, v, u.Event)
				outcome(v, store.OutcomeCommitted, "")
			case strings.HasPrefix(u.Event, "rolled back from "):
				v, why, _ := strings.Cut(strings.TrimPrefix(u.Event, "rolled back from "), ": ")
				add(store.EventRolledBack, v, u.Event)
				outcome(v, store.OutcomeFailed, why)
			default:
				add(store.EventUpdate, u.Version, u.Event)
			}
		}
		var oldBad map[string]string
		if ou != nil {
			oldBad = ou.Bad
		}
		for _, v := range slices.Sorted(maps.Keys(u.Bad)) {
			if _, seen := oldBad[v]; !seen {
				add(store.EventBadRelease, v, "bad release "+v+": "+u.Bad[v])
				outcome(v, store.OutcomeFailed, u.Bad[v])
			}
		}
	}

	// Phase 3: workloads.
	if w := cur.Status.Workloads; w != nil && w.Group != "" {
		rep.WorkloadGroup = clip(w.Group)
	}
	if k := cur.workloadKey(); k != old.workloadKey() {
		rep.Workloads = clip(k)
		if k == "" {
			k = "no workloads"
		}
		add(store.EventWorkload, "", k)
	}
	return rep
}

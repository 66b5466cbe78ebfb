package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/server/store"
)

// Change is one operator change of a release's rollout control: what
// `plumb rollout set|pause|resume|halt` and the fleet page's buttons make.
type Change struct {
	// Dir is the repository directory; the targets, snapshot and
	// timestamp keys must be in Dir/keys (root is never touched).
	Dir         string
	RepoOptions tufrepo.Options
	// Release is HARDWARE/VERSION, or VERSION with Hardware (or alone
	// when one hardware has it).
	Release, Hardware string
	// Action names the change in the audit log: "rollout.set",
	// "rollout.pause", "rollout.resume", "rollout.halt".
	Action string
	Group  string // the group a rollout.set is for, "" the default
	Actor  string // who makes it
	Edit   tufrepo.RolloutEdit
	Audit  Auditor // nil: not recorded
}

// Apply makes the change (tufrepo.Repo.Rollout: re-signs targets,
// snapshot and timestamp) and then records it with ch.Audit. A change
// that fails leaves the repository as it was; when only the audit record
// fails, the error says the release changed.
func Apply(ctx context.Context, ch Change) (hw, version string, f *release.Facts, err error) {
	r, err := tufrepo.Open(ch.Dir, ch.RepoOptions)
	if err != nil {
		return "", "", nil, err
	}
	if hw, version, err = r.FindRelease(ch.Release, ch.Hardware); err != nil {
		return "", "", nil, err
	}
	if f, err = r.Rollout(ctx, hw, version, ch.Edit); err != nil {
		return hw, version, nil, err
	}
	if ch.Audit == nil {
		return hw, version, f, nil
	}
	detail := fmt.Sprintf("rollout %d%%, %d waves, paused %v", f.Rollout, len(f.Waves), f.Paused)
	if f.Halted != nil {
		detail += ", halted: " + f.Halted.Reason
	}
	if ch.Group != "" {
		detail += ", group " + ch.Group
	}
	if err := ch.Audit.Record(ctx, Entry{Time: time.Now().UTC(), Actor: ch.Actor, Action: ch.Action, Release: hw + "/" + version, Detail: detail}); err != nil {
		return hw, version, f, fmt.Errorf("%s/%s changed, but recording it failed: %w", hw, version, err)
	}
	return hw, version, f, nil
}

// StoreAudit records rollout actions in the fleet database's audit log
// (server/store), where the page and `plumb fleet audit` show them: for
// OrgID, or for every organization when OrgID is "" (a release is served
// to the devices of all of them).
type StoreAudit struct {
	DB    *store.Store
	OrgID string
}

// Record implements Auditor.
func (a StoreAudit) Record(ctx context.Context, e Entry) error {
	orgs := []string{a.OrgID}
	if a.OrgID == "" {
		all, err := a.DB.Orgs(ctx)
		if err != nil {
			return err
		}
		orgs = orgs[:0]
		for _, o := range all {
			orgs = append(orgs, o.ID)
		}
	}
	for _, o := range orgs {
		if err := a.DB.Audit(ctx, store.AuditEntry{At: e.Time, OrgID: o, Actor: e.Actor, Action: e.Action, Target: e.Release, Detail: e.Detail}); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
	}
	return nil
}

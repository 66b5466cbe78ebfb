package tufrepo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/release"
)

// Approve adds a to the approval in the release facts of the full release
// hardware/version (devices with install: download-only install it once
// it covers them) and signs new targets, snapshot and timestamp versions.
// Approvals accumulate: groups and devices are added to those already
// approved. A failed approve leaves the repository as it was.
func (r *Repo) Approve(ctx context.Context, hardware, version string, a release.Approval) (err error) {
	if err := a.Validate(); err != nil {
		return invalid("approve: %v", err)
	}
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	p := release.TargetPath(hardware, version)
	tf, ok := st.targets.Signed.Targets[p]
	if !ok || tf.Custom == nil {
		return invalid("approve: no release %s for hardware %q in the repository (%s)", version, hardware, p)
	}
	f, err := release.Parse(*tf.Custom)
	if err != nil {
		return fmt.Errorf("approve: target %s: %w", p, err)
	}
	merged := a
	if old := f.Approved; old != nil {
		merged.All = old.All || a.All
		merged.Groups = union(old.Groups, a.Groups)
		merged.Devices = union(old.Devices, a.Devices)
	}
	f.Approved = &merged
	custom, err := json.Marshal(f)
	if err != nil {
		return err
	}
	raw := json.RawMessage(custom)
	tf.Custom = &raw
	signers, err := r.signers(st.root, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP)
	if err != nil {
		return err
	}
	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed approve: %w", rerr))
		}
	}()
	changed := map[string]bool{metadata.TARGETS: true, metadata.SNAPSHOT: true, metadata.TIMESTAMP: true}
	if err := r.signAndWrite(ctx, t, st, changed, signers); err != nil {
		return err
	}
	r.opts.Log.Info("release approved", "hardware", hardware, "version", version, "all", merged.All, "groups", merged.Groups, "devices", merged.Devices)
	return nil
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

package tufrepo

import (
	"context"
	"errors"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Refresh re-signs timestamp.json with a new version and expiry. It also
// gives snapshot a new version when snapshot would expire before the new
// timestamp does, and targets (and the delegated apps role, with its own
// keys) when it would expire before that snapshot.
// Root is never re-signed here (its key is meant to be offline): a root
// that expires within the timestamp's validity is logged as a warning.
// Run it more often than the timestamp's validity (cron, a timer).
func (r *Repo) Refresh(ctx context.Context) (err error) {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	changed := map[string]bool{metadata.TIMESTAMP: true}
	tsExp := r.expires(metadata.TIMESTAMP)
	snapExp := st.snapshot.Signed.Expires
	if snapExp.Before(tsExp) {
		changed[metadata.SNAPSHOT] = true
		snapExp = r.expires(metadata.SNAPSHOT)
	}
	if st.targets.Signed.Expires.Before(snapExp) {
		changed[metadata.TARGETS] = true
		changed[metadata.SNAPSHOT] = true
	}
	if st.apps != nil && st.apps.Signed.Expires.Before(snapExp) {
		changed[appsRole] = true
		changed[metadata.SNAPSHOT] = true
	}
	if st.root.Signed.Expires.Before(tsExp) {
		r.opts.Log.Warn("root metadata expires soon: run plumb repo rotate root with the offline root key", "expires", st.root.Signed.Expires)
	}
	var names []string
	for _, role := range roles {
		if changed[role] {
			names = append(names, role)
		}
	}
	signers, err := r.signers(st.root, names...)
	if err != nil {
		return err
	}
	if changed[appsRole] {
		// The apps keys belong to the application owner: without them
		// here, the apps role cannot be re-signed.
		s, err := r.appsSigners(st)
		if err != nil {
			return fmt.Errorf("apps metadata expires at %s: %w", st.apps.Signed.Expires, err)
		}
		signers[appsRole] = s
		names = append(names, appsRole)
	}
	if err := r.bump(st, changed, signers); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed refresh: %w", rerr))
		}
	}()
	if err := r.writeVersioned(t, st, changed); err != nil {
		return err
	}
	if err := r.writeFixed(t, st, changed); err != nil {
		return err
	}
	t.commit()
	r.opts.Log.Info("repository refreshed", "roles", names, "timestamp_version", st.timestamp.Signed.Version, "expires", st.timestamp.Signed.Expires)
	return nil
}

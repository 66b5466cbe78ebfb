package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Rotate replaces role's key with a new one. It always needs the current
// root key (keys/root.key): a new root version lists the new key instead
// of the old. For root itself that version is signed by both the old and
// the new root key, so clients trusting the old root walk to it. For the
// other roles, the role's metadata and those above it in the chain
// (targets → snapshot → timestamp) are re-signed with new versions.
func (r *Repo) Rotate(ctx context.Context, role string) (err error) {
	if !slices.Contains(roles, role) {
		return invalid("role: expected root, targets, snapshot or timestamp, got %q", role)
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
	old, err := r.load() // the trusted root the new one must satisfy
	if err != nil {
		return err
	}
	rootSigner, err := r.signer(metadata.ROOT)
	if err != nil {
		return err
	}
	priv, key, err := newKey()
	if err != nil {
		return err
	}
	newSigner, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return fmt.Errorf("loading new %s key: %w", role, err)
	}
	pemBytes, err := encodeKey(priv)
	if err != nil {
		return err
	}
	for _, id := range slices.Clone(st.root.Signed.Roles[role].KeyIDs) {
		if err := st.root.Signed.RevokeKey(id, role); err != nil {
			return fmt.Errorf("revoking old %s key: %w", role, err)
		}
	}
	if err := st.root.Signed.AddKey(key, role); err != nil {
		return fmt.Errorf("adding new %s key: %w", role, err)
	}

	changed := map[string]bool{metadata.ROOT: true}
	chain := map[string][]string{
		metadata.ROOT:      nil,
		metadata.TARGETS:   {metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP},
		metadata.SNAPSHOT:  {metadata.SNAPSHOT, metadata.TIMESTAMP},
		metadata.TIMESTAMP: {metadata.TIMESTAMP},
	}[role]
	signers := map[string]signature.Signer{metadata.ROOT: rootSigner}
	for _, c := range chain {
		changed[c] = true
		if c == role {
			signers[c] = newSigner
		} else if signers[c], err = r.signer(c); err != nil {
			return err
		}
	}
	if role == metadata.ROOT {
		signers[metadata.ROOT] = newSigner
	}
	if err := r.bump(st, changed, signers); err != nil {
		return err
	}
	if role == metadata.ROOT {
		if _, err := st.root.Sign(rootSigner); err != nil {
			return fmt.Errorf("signing root with the old root key: %w", err)
		}
	}
	if err := old.root.VerifyDelegate(metadata.ROOT, st.root); err != nil {
		return fmt.Errorf("checking the new root against the old: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed rotation: %w", rerr))
		}
	}()
	if err := r.writeVersioned(t, st, changed); err != nil {
		return err
	}
	if err := t.replace(r.keyPath(role), pemBytes, 0o600); err != nil {
		return err
	}
	if err := r.writeFixed(t, st, changed); err != nil {
		return err
	}
	t.commit()
	id, _ := key.ID()
	r.opts.Log.Info("key rotated", "role", role, "key_id", id, "root_version", st.root.Signed.Version)
	return nil
}

package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Rotate replaces all keys of role with as many new ones (the threshold
// stays). It always needs the current root keys (keys/root*.key, at least
// root's threshold of them): a new root version lists the new keys
// instead of the old. For root itself that version is signed by the old
// root keys present and all the new ones, so clients trusting the old root
// walk to it. For the other roles, the role's metadata and those above it
// in the chain (targets → snapshot → timestamp) are re-signed with new
// versions, which needs those roles' keys too. The new keys replace the
// role's key files (keys/<role>.key, keys/<role>-2.key …); any other key
// file of the role is removed.
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
	oldRootSigners, err := r.roleSigners(old.root, metadata.ROOT)
	if err != nil {
		return err
	}
	chain := map[string][]string{
		metadata.ROOT:      nil,
		metadata.TARGETS:   {metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP},
		metadata.SNAPSHOT:  {metadata.SNAPSHOT, metadata.TIMESTAMP},
		metadata.TIMESTAMP: {metadata.TIMESTAMP},
	}[role]
	changed := map[string]bool{metadata.ROOT: true}
	signers := map[string][]signature.Signer{metadata.ROOT: oldRootSigners}
	for _, c := range chain {
		changed[c] = true
		if c == role {
			continue
		}
		if signers[c], err = r.roleSigners(old.root, c); err != nil {
			return err
		}
	}
	oldFiles, err := r.keyFiles(role)
	if err != nil {
		return err
	}

	n := len(st.root.Signed.Roles[role].KeyIDs)
	var newSigners []signature.Signer
	var pems [][]byte
	var ids []string
	for _, id := range slices.Clone(st.root.Signed.Roles[role].KeyIDs) {
		if err := st.root.Signed.RevokeKey(id, role); err != nil {
			return fmt.Errorf("revoking old %s key: %w", role, err)
		}
	}
	for range n {
		priv, key, err := newKey()
		if err != nil {
			return err
		}
		s, err := signature.LoadED25519Signer(priv)
		if err != nil {
			return fmt.Errorf("loading new %s key: %w", role, err)
		}
		pemBytes, err := encodeKey(priv)
		if err != nil {
			return err
		}
		if err := st.root.Signed.AddKey(key, role); err != nil {
			return fmt.Errorf("adding new %s key: %w", role, err)
		}
		id, _ := key.ID()
		newSigners = append(newSigners, s)
		pems = append(pems, pemBytes)
		ids = append(ids, id)
	}
	signers[role] = newSigners
	if err := r.bump(st, changed, signers); err != nil {
		return err
	}
	if role == metadata.ROOT {
		for _, s := range oldRootSigners {
			if err := st.sign(metadata.ROOT, s); err != nil {
				return fmt.Errorf("signing with the old root keys: %w", err)
			}
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
	for i, p := range pems {
		if err := t.replace(r.keyPathN(role, i+1), p, 0o600); err != nil {
			return err
		}
	}
	for _, f := range oldFiles {
		if f.index > n {
			if err := t.remove(f.path); err != nil {
				return err
			}
		}
	}
	if err := r.writeFixed(t, st, changed); err != nil {
		return err
	}
	t.commit()
	r.opts.Log.Info("keys rotated", "role", role, "key_ids", ids, "threshold", st.root.Signed.Roles[role].Threshold, "root_version", st.root.Signed.Version)
	return nil
}

package tufrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// state is the repository's current top-level metadata.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	// apps is the delegated role that signs workload manifests; nil in a
	// repository made before workloads existed.
	apps *metadata.Metadata[metadata.TargetsType]
}

// load reads the current metadata: root.json, timestamp.json, the snapshot
// version timestamp names and the targets version that snapshot names,
// and checks each against root's keys.
func (r *Repo) load() (*state, error) {
	st := &state{}
	var err error
	if st.root, err = metadata.Root().FromFile(r.metaPath(rootJSON)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", rootJSON, err)
	}
	if st.timestamp, err = metadata.Timestamp().FromFile(r.metaPath(timestampJS)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", timestampJS, err)
	}
	sm, ok := st.timestamp.Signed.Meta["snapshot.json"]
	if !ok {
		return nil, fmt.Errorf("%s: no snapshot.json entry", timestampJS)
	}
	name := versioned(sm.Version, metadata.SNAPSHOT)
	if st.snapshot, err = metadata.Snapshot().FromFile(r.metaPath(name)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	tm, ok := st.snapshot.Signed.Meta["targets.json"]
	if !ok {
		return nil, fmt.Errorf("%s: no targets.json entry", name)
	}
	name = versioned(tm.Version, metadata.TARGETS)
	if st.targets, err = metadata.Targets().FromFile(r.metaPath(name)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if am, ok := st.snapshot.Signed.Meta[appsRole+".json"]; ok {
		name = versioned(am.Version, appsRole)
		if st.apps, err = metadata.Targets().FromFile(r.metaPath(name)); err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
	}
	if err := st.verify(); err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.dir, err)
	}
	return st, nil
}

// verify checks every role's signatures against root, as a client would.
func (st *state) verify() error {
	if err := st.root.VerifyDelegate(metadata.ROOT, st.root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if err := st.root.VerifyDelegate(metadata.TARGETS, st.targets); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	if err := st.root.VerifyDelegate(metadata.SNAPSHOT, st.snapshot); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := st.root.VerifyDelegate(metadata.TIMESTAMP, st.timestamp); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if st.apps != nil {
		if err := st.targets.VerifyDelegate(appsRole, st.apps); err != nil {
			return fmt.Errorf("%s: %w", appsRole, err)
		}
	}
	return nil
}

// signAll signs the roles present in signers with all of their keys
// (replacing their signatures), then verifies the whole set against root.
func (st *state) signAll(signers map[string][]signature.Signer) error {
	for _, role := range append(roles[:len(roles):len(roles)], appsRole) {
		ss, ok := signers[role]
		if !ok {
			continue
		}
		switch role {
		case metadata.ROOT:
			st.root.ClearSignatures()
		case metadata.TARGETS:
			st.targets.ClearSignatures()
		case metadata.SNAPSHOT:
			st.snapshot.ClearSignatures()
		case metadata.TIMESTAMP:
			st.timestamp.ClearSignatures()
		case appsRole:
			st.apps.ClearSignatures()
		}
		for _, s := range ss {
			if err := st.sign(role, s); err != nil {
				return err
			}
		}
	}
	if err := st.verify(); err != nil {
		return fmt.Errorf("checking new signatures (do the key files match root.json?): %w", err)
	}
	return nil
}

// sign adds one signature to role's metadata.
func (st *state) sign(role string, s signature.Signer) error {
	var err error
	switch role {
	case metadata.ROOT:
		_, err = st.root.Sign(s)
	case metadata.TARGETS:
		_, err = st.targets.Sign(s)
	case metadata.SNAPSHOT:
		_, err = st.snapshot.Sign(s)
	case metadata.TIMESTAMP:
		_, err = st.timestamp.Sign(s)
	case appsRole:
		_, err = st.apps.Sign(s)
	default:
		err = fmt.Errorf("unknown role")
	}
	if err != nil {
		return fmt.Errorf("signing %s: %w", role, err)
	}
	return nil
}

// txn writes new files and replaces existing ones so that rollback can
// undo all of it. Replaced files are small (metadata, keys): their old
// content is kept in memory.
type txn struct {
	created  []string // files and directories to remove on rollback, in creation order
	replaced []saved
	done     bool
}

type saved struct {
	path string
	data []byte // nil: did not exist
	perm os.FileMode
}

// create writes a new file (replacing an orphan of an interrupted run).
func (t *txn) create(path string, data []byte, perm os.FileMode) error {
	if err := writeFile(path, data, perm); err != nil {
		return err
	}
	t.created = append(t.created, path)
	return nil
}

// replace atomically replaces path, remembering its old content.
func (t *txn) replace(path string, data []byte, perm os.FileMode) error {
	old, err := os.ReadFile(path)
	s := saved{path: path, data: old, perm: perm}
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.data = nil
	case err != nil:
		return fmt.Errorf("reading %s: %w", path, err)
	default:
		if fi, err := os.Stat(path); err == nil {
			s.perm = fi.Mode().Perm()
		}
	}
	if err := writeFile(path, data, perm); err != nil {
		return err
	}
	t.replaced = append(t.replaced, s)
	return nil
}

// remove removes path, remembering its content for rollback.
func (t *txn) remove(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	t.replaced = append(t.replaced, saved{path: path, data: old, perm: fi.Mode().Perm()})
	return syncDir(filepath.Dir(path))
}

// mkdirAll creates dir and missing parents, remembering those it created.
func (t *txn) mkdirAll(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		t.created = append(t.created, missing[i])
	}
	return nil
}

// commit ends the transaction; rollback becomes a no-op.
func (t *txn) commit() { t.done = true }

// rollback undoes everything unless committed. Errors are returned joined.
func (t *txn) rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	var errs []error
	for i := len(t.replaced) - 1; i >= 0; i-- {
		s := t.replaced[i]
		var err error
		if s.data == nil {
			err = os.Remove(s.path)
		} else {
			err = writeFile(s.path, s.data, s.perm)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", s.path, err))
		}
	}
	for i := len(t.created) - 1; i >= 0; i-- {
		if err := os.Remove(t.created[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", t.created[i], err))
		}
	}
	return errors.Join(errs...)
}

// bump gives the roles in changed a new version and expiry, links
// snapshot to targets and timestamp to snapshot, and signs them with the
// keys in signers (which must hold every changed role).
func (r *Repo) bump(st *state, changed map[string]bool, signers map[string][]signature.Signer) error {
	if changed[metadata.ROOT] {
		st.root.Signed.Version++
		st.root.Signed.Expires = r.expires(metadata.ROOT)
	}
	if changed[metadata.TARGETS] {
		st.targets.Signed.Version++
		st.targets.Signed.Expires = r.expires(metadata.TARGETS)
		st.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(st.targets.Signed.Version)
	}
	if changed[appsRole] {
		st.apps.Signed.Version++
		st.apps.Signed.Expires = r.expires(metadata.TARGETS)
		st.snapshot.Signed.Meta[appsRole+".json"] = metadata.MetaFile(st.apps.Signed.Version)
	}
	if changed[metadata.SNAPSHOT] {
		st.snapshot.Signed.Version++
		st.snapshot.Signed.Expires = r.expires(metadata.SNAPSHOT)
		st.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(st.snapshot.Signed.Version)
	}
	if changed[metadata.TIMESTAMP] {
		st.timestamp.Signed.Version++
		st.timestamp.Signed.Expires = r.expires(metadata.TIMESTAMP)
	}
	for role := range changed {
		if len(signers[role]) == 0 {
			return fmt.Errorf("signing %s: no key loaded", role)
		}
	}
	return st.signAll(signers)
}

// signAndWrite bumps and signs the changed roles, writes their versioned
// files, then the fixed-name ones, and commits t: the last steps of every
// change to the repository (rotate has its own order for root).
func (r *Repo) signAndWrite(ctx context.Context, t *txn, st *state, changed map[string]bool, signers map[string][]signature.Signer) error {
	if err := r.bump(st, changed, signers); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.writeVersioned(t, st, changed); err != nil {
		return err
	}
	if err := r.writeFixed(t, st, changed); err != nil {
		return err
	}
	t.commit()
	return nil
}

// writeVersioned creates the new versioned files of the changed roles.
func (r *Repo) writeVersioned(t *txn, st *state, changed map[string]bool) error {
	type enc interface{ ToBytes(bool) ([]byte, error) }
	for _, f := range []struct {
		role    string
		version int64
		md      enc
	}{
		{metadata.ROOT, st.root.Signed.Version, st.root},
		{metadata.TARGETS, st.targets.Signed.Version, st.targets},
		{metadata.SNAPSHOT, st.snapshot.Signed.Version, st.snapshot},
		{appsRole, appsVersion(st), st.apps},
	} {
		if !changed[f.role] {
			continue
		}
		data, err := f.md.ToBytes(false)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", f.role, err)
		}
		if err := t.create(r.metaPath(versioned(f.version, f.role)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeFixed replaces timestamp.json, then (after N.root.json exists) the
// root.json copy.
func (r *Repo) writeFixed(t *txn, st *state, changed map[string]bool) error {
	if changed[metadata.TIMESTAMP] {
		data, err := st.timestamp.ToBytes(false)
		if err != nil {
			return fmt.Errorf("encoding timestamp: %w", err)
		}
		if err := t.replace(r.metaPath(timestampJS), data, 0o644); err != nil {
			return err
		}
	}
	if changed[metadata.ROOT] {
		data, err := st.root.ToBytes(false)
		if err != nil {
			return fmt.Errorf("encoding root: %w", err)
		}
		if err := t.replace(r.metaPath(rootJSON), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func appsVersion(st *state) int64 {
	if st.apps == nil {
		return 0
	}
	return st.apps.Signed.Version
}

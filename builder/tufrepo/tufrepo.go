// Package tufrepo owns the publishing side of a Plumb update repository: a
// TUF 1.0 repository with consistent snapshots, written with go-tuf/v2's
// metadata API.
//
// Init creates a repository directory (keys and the first metadata); Open
// returns a Repo on which Publish adds a release, Refresh re-signs the
// short-lived metadata, Rotate replaces a role's keys, Releases lists what
// is published and Keys lists each role's threshold and keys. Each operation reads the repository afresh, takes an
// exclusive lock on DIR/lock, and either completes or leaves the repository
// as it was: new versioned files are written first, the files clients read
// by fixed name (timestamp.json, root.json) are replaced atomically last,
// and a failure removes what was written. Not safe for use by two
// processes without that lock (it is taken for you).
//
// Layout:
//
//	DIR/keys/{root,targets,snapshot,timestamp}.key   ed25519, PKCS#8 PEM, 0600
//	DIR/keys/apps.key                                 the delegated role apps (workload manifests)
//	DIR/keys/<role>-2.key … <role>-N.key             the further keys of a role with threshold N
//	DIR/repository/metadata/{N.root.json, root.json, timestamp.json, N.snapshot.json, N.targets.json, N.apps.json}
//	DIR/repository/targets/<hardware>/<version>/<sha256>.rootfs.sqfs
//	DIR/repository/targets/apps/<group>/<sha256>.{workloads.json,<archive>.tar}
//
// targets.json delegates the paths apps/*/* to the role apps (terminating)
// with its own keys; PublishWorkloads signs apps.json with them.
//
// Each role has Options.Threshold[role] keys (default 1) and needs all of
// them: its metadata is signed with every key of the role present in
// DIR/keys, and an operation that finds fewer than the threshold fails
// before writing anything. The root keys (keys/root*.key) are only needed
// by Rotate; they are meant to live offline, each with its holder, and be
// copied in for a rotation.
package tufrepo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/workload"
)

// ErrInvalid marks errors caused by the caller's input (a non-empty
// directory for Init, a missing build directory, an unknown role, a
// release that conflicts with a published one).
var ErrInvalid = errors.New("invalid input")

// ErrExists is returned by Publish when the version is already published
// with other content. errors.Is(err, ErrInvalid) holds for it too.
var ErrExists = &inputError{errors.New("release already published with other content")}

// inputError is an error caused by the caller's input: it matches
// ErrInvalid without adding that text to the message.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &inputError{fmt.Errorf(format, args...)}
}

// Roles are the top-level TUF roles, in signing order from the top.
var roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// appsRole is the role targets delegates the workload manifests to
// (target paths appsPaths), with its own keys: the OS team's keys cannot
// sign applications, the application team's keys cannot sign releases.
const appsRole = workload.Role

// appsPaths are the target paths the apps role may sign. TUF path
// patterns match segment by segment, so apps/<group>/<file> is apps/*/*.
var appsPaths = []string{"apps/*/*"}

// Default validity of each role's metadata.
var defaultExpiry = map[string]time.Duration{
	metadata.ROOT:      365 * 24 * time.Hour,
	metadata.TARGETS:   90 * 24 * time.Hour,
	metadata.SNAPSHOT:  7 * 24 * time.Hour,
	metadata.TIMESTAMP: 24 * time.Hour,
}

// Options configure a repository operation. The zero value is usable.
type Options struct {
	// Expiry is each role's validity, replacing the defaults role by role:
	// root 365 days, targets 90, snapshot 7, timestamp 1.
	Expiry map[string]time.Duration
	// Threshold is each role's signature threshold (1..10, default 1),
	// used by Init only: it creates that many keys for the role and
	// requires all of them. Later operations read thresholds from
	// root.json.
	Threshold map[string]int
	// Now is the clock (time.Now when nil); for tests.
	Now func() time.Time
	// Log receives progress; nil discards.
	Log *slog.Logger
}

func (o Options) resolve() (Options, error) {
	exp := make(map[string]time.Duration, len(defaultExpiry))
	for k, v := range defaultExpiry {
		exp[k] = v
	}
	for k, v := range o.Expiry {
		if _, ok := defaultExpiry[k]; !ok {
			return o, invalid("expiry: expected a role (root, targets, snapshot, timestamp), got %q", k)
		}
		if v <= 0 {
			return o, invalid("expiry[%s]: expected a positive duration, got %v", k, v)
		}
		exp[k] = v
	}
	o.Expiry = exp
	thr := make(map[string]int, len(roles)+1)
	for _, role := range roles {
		thr[role] = 1
	}
	thr[appsRole] = 1
	for k, v := range o.Threshold {
		if _, ok := thr[k]; !ok {
			return o, invalid("threshold: expected a role (root, targets, snapshot, timestamp, apps), got %q", k)
		}
		if v < 1 || v > maxThreshold {
			return o, invalid("threshold[%s]: expected 1..%d keys, got %d", k, maxThreshold, v)
		}
		thr[k] = v
	}
	o.Threshold = thr
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Repo is an opened repository directory.
type Repo struct {
	dir  string
	opts Options
}

// Paths inside the repository directory.
const (
	keysDir     = "keys"
	repoDir     = "repository"
	metaSubdir  = "repository/metadata"
	targetsDir  = "repository/targets"
	lockFile    = "lock"
	rootJSON    = "root.json"
	timestampJS = "timestamp.json"
)

func (r *Repo) metaPath(name string) string { return filepath.Join(r.dir, metaSubdir, name) }
func (r *Repo) keyPath(role string) string  { return r.keyPathN(role, 1) }
func (r *Repo) keyPathN(role string, i int) string {
	return filepath.Join(r.dir, keysDir, keyFileName(role, i))
}
func versioned(version int64, role string) string {
	return strconv.FormatInt(version, 10) + "." + role + ".json"
}

// Init creates a repository in dir (created if missing, refused when not
// empty): Options.Threshold[role] fresh ed25519 keys per role (one by
// default), root version 1 listing them with that threshold,
// empty targets, snapshot and timestamp version 1. On failure it removes
// what it created.
func Init(ctx context.Context, dir string, opts Options) (err error) {
	opts, err = opts.resolve()
	if err != nil {
		return err
	}
	created := false
	switch entries, rerr := os.ReadDir(dir); {
	case errors.Is(rerr, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating repository: %w", err)
		}
		created = true
	case rerr != nil:
		return invalid("%s: expected a directory: %v", dir, rerr)
	case len(entries) > 0:
		return invalid("%s: expected an empty or missing directory, found %d entries", dir, len(entries))
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(dir)
			return
		}
		for _, p := range []string{keysDir, repoDir, lockFile} {
			os.RemoveAll(filepath.Join(dir, p))
		}
	}()
	r := &Repo{dir: dir, opts: opts}
	for _, d := range []struct {
		path string
		perm os.FileMode
	}{{keysDir, 0o700}, {metaSubdir, 0o755}, {targetsDir, 0o755}} {
		if err := os.MkdirAll(filepath.Join(dir, d.path), d.perm); err != nil {
			return fmt.Errorf("creating repository: %w", err)
		}
	}
	now := r.now()
	root := metadata.Root(now.Add(opts.Expiry[metadata.ROOT]))
	signers := map[string][]signature.Signer{}
	for _, role := range roles {
		n := opts.Threshold[role]
		for i := 1; i <= n; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			priv, key, err := newKey()
			if err != nil {
				return err
			}
			if err := root.Signed.AddKey(key, role); err != nil {
				return fmt.Errorf("adding %s key: %w", role, err)
			}
			s, err := signature.LoadED25519Signer(priv)
			if err != nil {
				return fmt.Errorf("loading %s key: %w", role, err)
			}
			signers[role] = append(signers[role], s)
			pemBytes, err := encodeKey(priv)
			if err != nil {
				return err
			}
			if err := writeNew(r.keyPathN(role, i), pemBytes, 0o600); err != nil {
				return err
			}
		}
		root.Signed.Roles[role].Threshold = n
	}
	st := &state{root: root}
	st.targets = metadata.Targets(now.Add(opts.Expiry[metadata.TARGETS]))
	st.snapshot = metadata.Snapshot(now.Add(opts.Expiry[metadata.SNAPSHOT]))
	st.timestamp = metadata.Timestamp(now.Add(opts.Expiry[metadata.TIMESTAMP]))
	// The delegated apps role: its own keys, paths apps/*/* only.
	st.apps = metadata.Targets(now.Add(opts.Expiry[metadata.TARGETS]))
	deleg := &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{{
		Name: appsRole, Threshold: opts.Threshold[appsRole], Terminating: true, Paths: appsPaths,
	}}}
	for i := 1; i <= opts.Threshold[appsRole]; i++ {
		priv, key, err := newKey()
		if err != nil {
			return err
		}
		id, err := key.ID()
		if err != nil {
			return fmt.Errorf("adding %s key: %w", appsRole, err)
		}
		deleg.Keys[id] = key
		deleg.Roles[0].KeyIDs = append(deleg.Roles[0].KeyIDs, id)
		s, err := signature.LoadED25519Signer(priv)
		if err != nil {
			return fmt.Errorf("loading %s key: %w", appsRole, err)
		}
		signers[appsRole] = append(signers[appsRole], s)
		pemBytes, err := encodeKey(priv)
		if err != nil {
			return err
		}
		if err := writeNew(r.keyPathN(appsRole, i), pemBytes, 0o600); err != nil {
			return err
		}
	}
	st.targets.Signed.Delegations = deleg
	st.snapshot.Signed.Meta[appsRole+".json"] = metadata.MetaFile(1)
	if err := st.signAll(signers); err != nil {
		return err
	}
	files := []struct {
		name string
		data func() ([]byte, error)
	}{
		{versioned(1, metadata.ROOT), func() ([]byte, error) { return st.root.ToBytes(false) }},
		{rootJSON, func() ([]byte, error) { return st.root.ToBytes(false) }},
		{versioned(1, metadata.TARGETS), func() ([]byte, error) { return st.targets.ToBytes(false) }},
		{versioned(1, metadata.SNAPSHOT), func() ([]byte, error) { return st.snapshot.ToBytes(false) }},
		{versioned(1, appsRole), func() ([]byte, error) { return st.apps.ToBytes(false) }},
		{timestampJS, func() ([]byte, error) { return st.timestamp.ToBytes(false) }},
	}
	for _, f := range files {
		data, err := f.data()
		if err != nil {
			return fmt.Errorf("encoding %s: %w", f.name, err)
		}
		if err := writeNew(r.metaPath(f.name), data, 0o644); err != nil {
			return err
		}
	}
	opts.Log.Info("repository created", "dir", dir, "root_expires", root.Signed.Expires, "thresholds", opts.Threshold)
	return nil
}

// Open opens the repository in dir. It checks that the metadata is there
// and reads; keys are read only when an operation needs them.
func Open(dir string, opts Options) (*Repo, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	r := &Repo{dir: dir, opts: opts}
	if _, err := os.Stat(r.metaPath(rootJSON)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, invalid("%s: expected a repository made by plumb repo init (no %s)", dir, filepath.Join(metaSubdir, rootJSON))
		}
		return nil, fmt.Errorf("opening repository: %w", err)
	}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// Dir is the repository directory.
func (r *Repo) Dir() string { return r.dir }

// MetadataDir is the directory served as the metadata base URL.
func (r *Repo) MetadataDir() string { return filepath.Join(r.dir, metaSubdir) }

// TargetsDir is the directory served as the targets base URL.
func (r *Repo) TargetsDir() string { return filepath.Join(r.dir, targetsDir) }

func (r *Repo) now() time.Time { return r.opts.Now().UTC().Truncate(time.Second) }

func (r *Repo) expires(role string) time.Time { return r.now().Add(r.opts.Expiry[role]) }

// lock takes the repository's exclusive lock; the returned func releases it.
func (r *Repo) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking repository: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking repository %s: another plumb command holds %s: %w", r.dir, lockFile, err)
	}
	return func() { f.Close() }, nil
}

// newKey makes an ed25519 key pair and its TUF public key.
func newKey() (ed25519.PrivateKey, *metadata.Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	return priv, key, nil
}

func encodeKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeSigner(path string, data []byte) (signature.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: expected a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: expected an ed25519 key, got %T", path, k)
	}
	return signature.LoadED25519Signer(priv)
}

package tufrepo

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key files. A role with n keys keeps them in keys/<role>.key,
// keys/<role>-2.key … keys/<role>-n.key. A repository made before
// thresholds existed has exactly keys/<role>.key per role, which is the
// n = 1 case of the same layout.
//
// Which key file holds which key does not matter: a role is signed with
// every key file of the role found on disk, each matched to root.json by
// its key id.

// maxThreshold bounds Options.Threshold.
const maxThreshold = 10

// keyFileName is the name of role's i-th key file (1-based).
func keyFileName(role string, i int) string {
	if i == 1 {
		return role + ".key"
	}
	return role + "-" + strconv.Itoa(i) + ".key"
}

// keyFileIndex parses a key file name of role; ok is false for other names.
func keyFileIndex(role, name string) (int, bool) {
	if name == role+".key" {
		return 1, true
	}
	s, ok := strings.CutPrefix(name, role+"-")
	if !ok {
		return 0, false
	}
	if s, ok = strings.CutSuffix(s, ".key"); !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 2 || strconv.Itoa(i) != s {
		return 0, false
	}
	return i, true
}

// keyFile is one key file of a role found on disk.
type keyFile struct {
	index int
	path  string
}

// keyFiles lists role's key files present in DIR/keys, by index.
func (r *Repo) keyFiles(role string) ([]keyFile, error) {
	entries, err := os.ReadDir(filepath.Join(r.dir, keysDir))
	if err != nil {
		return nil, fmt.Errorf("reading %s keys: %w", role, err)
	}
	var out []keyFile
	for _, e := range entries {
		if i, ok := keyFileIndex(role, e.Name()); ok && !e.IsDir() {
			out = append(out, keyFile{i, filepath.Join(r.dir, keysDir, e.Name())})
		}
	}
	slices.SortFunc(out, func(a, b keyFile) int { return cmp.Compare(a.index, b.index) })
	return out, nil
}

// roleKey is a private key read from a key file, with its TUF key id.
type roleKey struct {
	path   string
	id     string
	signer signature.Signer
}

// readKey reads and decodes one key file.
func readKey(path string) (roleKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return roleKey{}, fmt.Errorf("reading key: %w", err)
	}
	s, err := decodeSigner(path, data)
	if err != nil {
		return roleKey{}, err
	}
	pub, err := s.PublicKey()
	if err != nil {
		return roleKey{}, fmt.Errorf("%s: %w", path, err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return roleKey{}, fmt.Errorf("%s: expected an ed25519 key, got %T", path, pub)
	}
	k, err := metadata.KeyFromPublicKey(edPub)
	if err != nil {
		return roleKey{}, fmt.Errorf("%s: %w", path, err)
	}
	id, err := k.ID()
	if err != nil {
		return roleKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return roleKey{path: path, id: id, signer: s}, nil
}

// roleKeys reads role's key files and checks each against root: a file
// whose key root does not list for role is an error naming it. Two files
// holding the same key count once.
func (r *Repo) roleKeys(root *metadata.Metadata[metadata.RootType], role string) ([]roleKey, error) {
	rr := root.Signed.Roles[role]
	var ids []string
	if rr != nil {
		ids = rr.KeyIDs
	}
	return r.keysOf(role, ids, fmt.Sprintf("root.json version %d", root.Signed.Version))
}

// keysOf reads role's key files, each of which must hold one of ids
// (listed by the metadata named by from).
func (r *Repo) keysOf(role string, ids []string, from string) ([]roleKey, error) {
	files, err := r.keyFiles(role)
	if err != nil {
		return nil, err
	}
	var out []roleKey
	seen := map[string]bool{}
	for _, f := range files {
		k, err := readKey(f.path)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ids, k.id) {
			return nil, fmt.Errorf("%s: key %.16s is not a %s key of %s", f.path, k.id, role, from)
		}
		if !seen[k.id] {
			seen[k.id] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// roleSigners loads every key of role present on disk; fewer than root's
// threshold for role is an error saying how many are present and needed.
func (r *Repo) roleSigners(root *metadata.Metadata[metadata.RootType], role string) ([]signature.Signer, error) {
	keys, err := r.roleKeys(root, role)
	if err != nil {
		return nil, err
	}
	rr := root.Signed.Roles[role]
	if rr == nil {
		return nil, fmt.Errorf("root.json: no %s role", role)
	}
	if len(keys) < rr.Threshold {
		var missing []string
		for i := 1; i <= len(rr.KeyIDs); i++ {
			p := filepath.Join(keysDir, keyFileName(role, i))
			if _, err := os.Stat(filepath.Join(r.dir, p)); err != nil {
				missing = append(missing, p)
			}
		}
		return nil, fmt.Errorf("signing %s: %d of its keys present in %s, %d needed (threshold): copy in the missing key files (%s)",
			role, len(keys), filepath.Join(r.dir, keysDir), rr.Threshold, strings.Join(missing, ", "))
	}
	signers := make([]signature.Signer, len(keys))
	for i, k := range keys {
		signers[i] = k.signer
	}
	return signers, nil
}

// appsDelegation is targets' delegation to the apps role, or nil.
func appsDelegation(st *state) *metadata.DelegatedRole {
	d := st.targets.Signed.Delegations
	if d == nil {
		return nil
	}
	for i := range d.Roles {
		if d.Roles[i].Name == appsRole {
			return &d.Roles[i]
		}
	}
	return nil
}

// appsSigners loads the apps role's keys, checked against targets'
// delegation and its threshold.
func (r *Repo) appsSigners(st *state) ([]signature.Signer, error) {
	dr := appsDelegation(st)
	if dr == nil || st.apps == nil {
		return nil, invalid("%s: no delegated role %q (the repository was made before workloads existed): create a new repository with plumb repo init", r.dir, appsRole)
	}
	keys, err := r.keysOf(appsRole, dr.KeyIDs, fmt.Sprintf("targets.json version %d", st.targets.Signed.Version))
	if err != nil {
		return nil, err
	}
	if len(keys) < dr.Threshold {
		return nil, fmt.Errorf("signing %s: %d of its keys present in %s, %d needed (threshold): copy in the missing key files",
			appsRole, len(keys), filepath.Join(r.dir, keysDir), dr.Threshold)
	}
	out := make([]signature.Signer, len(keys))
	for i, k := range keys {
		out[i] = k.signer
	}
	return out, nil
}

// signers loads the keys of the given roles, checking each role's
// threshold against root.
func (r *Repo) signers(root *metadata.Metadata[metadata.RootType], roles ...string) (map[string][]signature.Signer, error) {
	m := map[string][]signature.Signer{}
	for _, role := range roles {
		s, err := r.roleSigners(root, role)
		if err != nil {
			return nil, err
		}
		m[role] = s
	}
	return m, nil
}

// RoleKeys describes one top-level role's keys.
type RoleKeys struct {
	Role      string `json:"role"`
	Threshold int    `json:"threshold"`
	Keys      []Key  `json:"keys"`
	// Paths are the target paths a delegated role may sign (apps: apps/*/*).
	Paths []string `json:"paths,omitempty"`
}

// Key is one key of a role: its TUF key id and the key file holding its
// private key ("" when the file is not in DIR/keys, e.g. kept offline).
type Key struct {
	ID   string `json:"id"`
	File string `json:"file,omitempty"`
}

// Keys lists each top-level role's threshold and keys from root.json, then
// the delegated role apps (from targets.json) with its paths, with
// the key files present in DIR/keys. A key file that is unreadable or
// holds a key root.json does not list for its role is an error naming it.
func (r *Repo) Keys() ([]RoleKeys, error) {
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	var out []RoleKeys
	for _, role := range roles {
		rr := st.root.Signed.Roles[role]
		keys, err := r.roleKeys(st.root, role)
		if err != nil {
			return nil, err
		}
		file := map[string]string{}
		for _, k := range keys {
			rel, _ := filepath.Rel(r.dir, k.path)
			file[k.id] = rel
		}
		rk := RoleKeys{Role: role, Threshold: rr.Threshold}
		for _, id := range rr.KeyIDs {
			rk.Keys = append(rk.Keys, Key{ID: id, File: file[id]})
		}
		out = append(out, rk)
	}
	if dr := appsDelegation(st); dr != nil {
		keys, err := r.keysOf(appsRole, dr.KeyIDs, fmt.Sprintf("targets.json version %d", st.targets.Signed.Version))
		if err != nil {
			return nil, err
		}
		file := map[string]string{}
		for _, k := range keys {
			rel, _ := filepath.Rel(r.dir, k.path)
			file[k.id] = rel
		}
		rk := RoleKeys{Role: appsRole, Threshold: dr.Threshold, Paths: dr.Paths}
		for _, id := range dr.KeyIDs {
			rk.Keys = append(rk.Keys, Key{ID: id, File: file[id]})
		}
		out = append(out, rk)
	}
	return out, nil
}

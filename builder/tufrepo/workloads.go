package tufrepo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/format/workload"
)

// WorkloadOptions choose how a workload manifest is published.
type WorkloadOptions struct {
	// Role signs the new targets: "" or "apps" (the only role devices
	// accept for apps/ targets). Tests set "targets" to prove that
	// devices refuse a manifest signed with the OS keys.
	Role string
}

// Workloads is what PublishWorkloads published.
type Workloads struct {
	Group   string   `json:"group"`
	Target  string   `json:"target"`  // apps/<group>/workloads.json
	SHA256  string   `json:"sha256"`  // of the manifest JSON
	Targets []string `json:"targets"` // every target added or replaced, archives first
	Version int64    `json:"apps_version"`
	Changed bool     `json:"changed"` // false: the same content was published already
}

// PublishWorkloads publishes group's manifest (validated; its archive
// targets must be in apps/<group>/) as apps/<group>/workloads.json, and
// the files in archives (target path -> host file) as the archive
// targets, all signed by the delegated role apps. Archives are streamed
// into the repository and hashed on the way. Publishing the same content
// again changes nothing. On failure the repository is left as it was.
func (r *Repo) PublishWorkloads(ctx context.Context, group string, m *workload.Manifest, archives map[string]string, o WorkloadOptions) (_ *Workloads, err error) {
	if err := workload.ValidGroup(group); err != nil {
		return nil, invalid("%w", err)
	}
	if err := m.Validate(group); err != nil {
		return nil, invalid("workloads: %w", err)
	}
	targetsOf := map[string]bool{}
	for _, c := range m.Containers {
		if c.Target != "" {
			targetsOf[c.Target] = true
		}
	}
	for t, file := range archives {
		if !targetsOf[t] {
			return nil, invalid("archive %s: no container names target %s", file, t)
		}
	}
	role := o.Role
	if role == "" {
		role = appsRole
	}
	if role != appsRole && role != metadata.TARGETS {
		return nil, invalid("role: expected apps (or targets, in tests), got %q", role)
	}
	manifest, err := m.Encode()
	if err != nil {
		return nil, err
	}
	unlock, err := r.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	// Every archive a container names must be published now or before.
	var into *metadata.Metadata[metadata.TargetsType]
	var signers map[string][]signature.Signer
	if role == appsRole {
		s, err := r.appsSigners(st)
		if err != nil {
			return nil, err
		}
		top, err := r.signers(st.root, metadata.SNAPSHOT, metadata.TIMESTAMP)
		if err != nil {
			return nil, err
		}
		signers = top
		signers[appsRole] = s
		into = st.apps
	} else {
		if signers, err = r.signers(st.root, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP); err != nil {
			return nil, err
		}
		into = st.targets
	}
	for t := range targetsOf {
		if _, ok := archives[t]; !ok {
			if _, ok := into.Signed.Targets[t]; !ok {
				return nil, invalid("workloads: target %s: not published yet: give its file (archive: in the YAML, or --archive)", t)
			}
		}
	}

	t := &txn{}
	defer func() {
		if rerr := t.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the failed publish: %w", rerr))
		}
	}()
	out := &Workloads{Group: group, Target: workload.TargetPath(group)}
	changed := false
	add := func(target string, d digest) {
		old, ok := into.Signed.Targets[target]
		if ok && old.Length == d.size && hex.EncodeToString(old.Hashes["sha256"]) == d.sha {
			return
		}
		sum, _ := hex.DecodeString(d.sha)
		tf := metadata.TargetFile()
		tf.Length = d.size
		tf.Hashes["sha256"] = sum
		tf.Path = target
		into.Signed.Targets[target] = tf
		out.Targets = append(out.Targets, target)
		changed = true
	}
	for _, target := range sortedKeys(archives) {
		d, err := r.copyFile(ctx, t, archives[target], target)
		if err != nil {
			return nil, err
		}
		add(target, d)
	}
	tmp, err := os.CreateTemp("", "plumb-workloads-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(manifest); err != nil {
		tmp.Close()
		return nil, err
	}
	tmp.Close()
	d, err := r.copyFile(ctx, t, tmp.Name(), out.Target)
	if err != nil {
		return nil, err
	}
	out.SHA256 = d.sha
	add(out.Target, d)
	if !changed {
		out.Version = into.Signed.Version
		r.opts.Log.Info("workloads already published", "group", group)
		return out, nil
	}
	bumped := map[string]bool{role: true, metadata.SNAPSHOT: true, metadata.TIMESTAMP: true}
	if err := r.signAndWrite(ctx, t, st, bumped, signers); err != nil {
		return nil, err
	}
	out.Version, out.Changed = into.Signed.Version, true
	r.opts.Log.Info("workloads published", "group", group, "target", out.Target, "role", role, "version", out.Version)
	return out, nil
}

type digest struct {
	sha  string
	size int64
}

// copyFile streams src into the targets directory as the consistent
// snapshot file of target (<dir>/<sha256>.<name>), hashing as it goes.
func (r *Repo) copyFile(ctx context.Context, t *txn, src, target string) (digest, error) {
	dir := filepath.Join(r.TargetsDir(), filepath.FromSlash(path.Dir(target)))
	if err := t.mkdirAll(dir); err != nil {
		return digest{}, err
	}
	in, err := os.Open(src)
	if err != nil {
		return digest{}, invalid("reading %s: %v", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return digest{}, fmt.Errorf("writing target %s: %w", target, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, in})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return digest{}, fmt.Errorf("writing target %s: %w", target, err)
	}
	d := digest{sha: hex.EncodeToString(h.Sum(nil)), size: n}
	final := filepath.Join(dir, d.sha+"."+path.Base(target))
	if _, err := os.Lstat(final); err == nil {
		return d, nil // same name, same content
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return digest{}, fmt.Errorf("writing target %s: %w", target, err)
	}
	t.created = append(t.created, final)
	return d, syncDir(dir)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

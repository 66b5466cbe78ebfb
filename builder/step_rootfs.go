package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// Paths the builder adds to every root filesystem.
const (
	agentPath = "usr/bin/plumbd"
)

// mountPoints are the directories plumb-init and init mount over (/etc and
// /var get writable overlays); they must
// exist in the read-only root.
var mountPoints = []string{"data", "dev", "etc", "proc", "run", "sys", "tmp", "var"}

// assembleRootfs applies the recipe's sources in order, then its files, then
// what Plumb itself needs (plumbd, its config, the kernel and its modules,
// the release facts), and finally gives every entry the build's time.
func (b *build) assembleRootfs(ctx context.Context, _ *progress.Step) error {
	t := fstree.New()
	for i, src := range b.r.Rootfs {
		if err := b.applySource(ctx, t, src); err != nil {
			if errors.Is(err, fstree.ErrEscapes) {
				err = fmt.Errorf("%w: %w", ErrBadInput, err)
			}
			return fmt.Errorf("rootfs[%d] (%s): %w", i, src.Kind(), err)
		}
	}
	for i, f := range b.r.Files {
		if err := applyFile(t, f); err != nil {
			return fmt.Errorf("%w: files[%d] (%s): %w", ErrBadInput, i, f.Path, err)
		}
	}
	if err := b.addPlumb(t); err != nil {
		return err
	}
	t.SetTimes(b.epoch, false)
	b.tree = t
	b.log.Debug("root filesystem assembled", "entries", t.Len())
	return nil
}

func (b *build) applySource(ctx context.Context, t *fstree.Tree, src recipe.Source) error {
	switch src.Kind() {
	case recipe.SourceDeb:
		for _, name := range src.Deb {
			deb, err := b.fetch.Fetch(ctx, name)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBadInput, err)
			}
			if err := rootfs.AddDeb(ctx, t, b.store, deb); err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
		}
	case recipe.SourceDir:
		// A checkout's owners depend on who cloned it: a dir source is
		// owned by root, as mksquashfs -all-root would make it.
		d := fstree.New()
		if err := rootfs.AddDir(d, src.Dir, "/"); err != nil {
			return err
		}
		return merge(t, d, func(n *fstree.Node) { n.UID, n.GID = 0, 0 })
	case recipe.SourceTar:
		f, err := os.Open(src.Tar)
		if err != nil {
			return err
		}
		defer f.Close()
		return rootfs.AddTar(ctx, t, b.store, f, "/")
	case recipe.SourceOCI:
		return rootfs.AddOCI(ctx, t, b.store, src.OCI)
	default:
		return fmt.Errorf("%w: unknown source kind", ErrBadInput)
	}
	return nil
}

// merge copies every entry of src over dst (src's root directory's metadata
// included), calling fix on each node once. Hard links stay hard links.
func merge(dst, src *fstree.Tree, fix func(*fstree.Node)) error {
	seen := map[*fstree.Node]bool{}
	return src.Walk(func(p string, n *fstree.Node) error {
		if !seen[n] {
			seen[n] = true
			if fix != nil {
				fix(n)
			}
		}
		if p == "." {
			return nil // keep dst's root
		}
		return dst.Put(p, n)
	})
}

func applyFile(t *fstree.Tree, f recipe.File) error {
	n := &fstree.Node{UID: f.UID, GID: f.GID}
	perm := f.Mode.Perm()
	switch f.Kind() {
	case recipe.FileContent:
		n.Mode, n.Size, n.Source = perm, int64(len(*f.Content)), fstree.Bytes(*f.Content)
	case recipe.FileSource:
		fi, err := os.Stat(f.Source)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("source %s: expected a regular file", f.Source)
		}
		n.Mode, n.Size, n.Source = perm, fi.Size(), fstree.HostFile(f.Source)
	case recipe.FileSymlink:
		n.Mode, n.Target = fs.ModeSymlink|0o777, f.Symlink
	case recipe.FileDir:
		if old := t.Get(f.Path); old != nil && old.IsDir() {
			old.Mode, old.UID, old.GID = fs.ModeDir|perm, f.UID, f.GID
			return nil
		}
		n.Mode = fs.ModeDir | perm
	default:
		return fmt.Errorf("expected one of content, source, symlink, dir")
	}
	return t.Put(f.Path, n)
}

// addPlumb adds plumbd, its configuration, the release facts, the kernel
// and its modules, and the mount points.
func (b *build) addPlumb(t *fstree.Tree) error {
	for _, d := range mountPoints {
		if n := t.Get(d); n != nil && !n.IsDir() {
			return fmt.Errorf("%w: /%s must be a directory (plumb-init mounts it), the sources made it a %v", ErrBadInput, d, n.Mode.Type())
		}
		if err := t.MkdirAll(d, b.epoch); err != nil {
			return err
		}
	}
	fi, err := os.Stat(b.opts.Agent)
	if err != nil {
		return err
	}
	if err := t.Put(agentPath, &fstree.Node{Mode: 0o755, Size: fi.Size(), Source: fstree.HostFile(b.opts.Agent)}); err != nil {
		return err
	}
	rel := release.ImageInfo{Name: b.r.Name, Version: b.r.Version, Hardware: b.r.Hardware, Channel: b.r.Channel, KernelRelease: b.kernel.release}
	if err := putJSON(t, release.ImageInfoPath, rel); err != nil {
		return err
	}
	if err := b.addAgentConfig(t); err != nil {
		return err
	}
	if err := t.Put(bootentry.ImageKernel, b.kernel.image); err != nil {
		return err
	}
	// The whole module tree, so that the running system can load any module.
	if b.kernel.release != "" {
		mods := path.Join("lib/modules", b.kernel.release)
		if b.kernel.tree.Get(mods) != nil {
			sub := fstree.New()
			err := b.kernel.tree.Walk(func(p string, n *fstree.Node) error {
				if p == mods || len(p) > len(mods) && p[:len(mods)+1] == mods+"/" {
					return sub.Put(p, n)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := merge(t, sub, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// addAgentConfig writes /etc/plumb/agent.json (and the trusted root and CA
// next to it) from the recipe's agent section, or a configuration without a
// repository when the recipe has none.
func (b *build) addAgentConfig(t *fstree.Tree) error {
	c := config.Config{Hardware: b.r.Hardware, Channel: b.r.Channel, Poll: config.Duration(5 * time.Minute), Commit: "health"}
	if a := b.r.Agent; a != nil {
		c.Repository, c.Poll, c.Commit, c.Reboot, c.Report = a.Repository, config.Duration(a.Poll), a.Commit, a.Reboot, a.Report
		c.Group = a.Group
		c.Link = config.Link{
			Proxy: a.Link.Proxy, RateLimit: int64(a.Link.RateLimit), Attempts: a.Link.Attempts,
			RequestTimeout: config.Duration(a.Link.RequestTimeout), IdleTimeout: config.Duration(a.Link.IdleTimeout),
		}
		fieldConfig(a, &c)
		if a.Wake != nil {
			c.Wake = &config.Wake{Poll: config.Duration(a.Wake.Poll)}
		}
		if w := a.Workloads; w != nil {
			c.Workloads = &config.Workloads{Group: w.Group, Containerd: w.Containerd, Namespace: w.Namespace, DataDir: w.DataDir}
		}
		for _, h := range a.Health {
			c.Health = append(c.Health, config.HealthCheck{Command: h.Command, File: h.File, URL: h.URL, Timeout: config.Duration(h.Timeout)})
		}
		for src, dst := range map[string]string{a.Root: config.RootPath, a.CA: config.CAPath} {
			if src == "" {
				continue
			}
			fi, err := os.Stat(src)
			if err != nil {
				return fmt.Errorf("%w: agent: %w", ErrBadInput, err)
			}
			if err := t.Put(dst, &fstree.Node{Mode: 0o644, Size: fi.Size(), Source: fstree.HostFile(src)}); err != nil {
				return err
			}
		}
		if a.Root != "" {
			c.Root = config.RootPath
		}
		if a.CA != "" {
			c.CA = config.CAPath
		}
		if a.JoinToken != "" {
			tok, err := os.ReadFile(a.JoinToken)
			if err != nil {
				return fmt.Errorf("%w: agent.join_token: %w", ErrBadInput, err)
			}
			c.JoinToken = strings.TrimSpace(string(tok))
			if c.JoinToken == "" || len(c.JoinToken) > 256 || strings.ContainsAny(c.JoinToken, " \t\n\r") {
				return fmt.Errorf("%w: agent.join_token: %s: expected one join token (1-256 characters, one line)", ErrBadInput, a.JoinToken)
			}
		}
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return putJSON(t, config.Path, c)
}

func putJSON(t *fstree.Tree, p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return t.Put(p, &fstree.Node{Mode: 0o644, Size: int64(len(data)), Source: fstree.Bytes(data)})
}

// Package reconcile makes containerd run what a workload manifest lists.
//
// New connects to containerd; Apply brings the containers of one group in
// line with a verified manifest: it fetches the images first (OCI image
// archives as TUF targets, streamed and verified, then imported; registry
// references pulled by their pinned digest), and only when every image is
// there and its digest is the one the manifest pins does it touch the
// containers: removes those no longer listed, replaces those whose
// definition changed, creates and starts the new ones, and deletes images
// nothing uses. A failure before that leaves the running containers as
// they were. Each container has a supervisor goroutine that restarts it
// per its restart policy and runs its health check. Status reports every
// container; it is also written to Options.StateDir/status.json for
// `plumbd status`.
//
// Apply calls are serialised. Close stops the supervisors but leaves the
// containers running (containerd keeps them); a later New adopts them.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/plumb-os/plumb/format/workload"
)

// Labels the reconciler puts on what it creates.
const (
	labelGroup = "plumb.group"
	labelSpec  = "plumb.spec"
	labelName  = "plumb.name"
)

// Defaults.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "plumb"
	DefaultSnapshotter = "overlayfs"
	DefaultRuntime     = "io.containerd.runc.v2"
	stopTimeout        = 10 * time.Second
)

// ErrRefused marks an image that does not match what the manifest pins
// (a verification failure, like a bad TUF signature).
var ErrRefused = errors.New("image refused")

// Options configure a Reconciler.
type Options struct {
	Address     string // containerd's socket; default DefaultAddress
	Namespace   string // containerd namespace; default DefaultNamespace
	Snapshotter string // default DefaultSnapshotter
	Runtime     string // default DefaultRuntime
	// DataDir is the root of the containers' mounts: a mount's source is
	// DataDir/<group>/<source>. Required.
	DataDir string
	// StateDir holds downloaded archives, container logs and status.json.
	// Required.
	StateDir string
	// RestartDelay is the first delay before a restart (doubling up to
	// 30s while the container keeps failing within 10s); default 1s.
	RestartDelay time.Duration
	Log          *slog.Logger
}

// Targets is where archives come from: *fetch.Client's verified,
// resumable download of a trusted target.
type Targets interface {
	DownloadFile(ctx context.Context, targetPath string, f *os.File, done int64, progress io.Writer) (int64, error)
}

// Reconciler drives containerd. Safe for concurrent use.
type Reconciler struct {
	opts   Options
	client *client.Client
	log    *slog.Logger
	base   context.Context // namespaced; lives until Close
	cancel context.CancelFunc

	applyMu sync.Mutex // serialises Apply
	mu      sync.Mutex // guards sups, group, lastErr and the status file
	sups    map[string]*supervisor
	group   string
	lastErr string
	applied string // sha256 of the applied manifest JSON
}

// New connects to containerd at opts.Address (waiting up to 10 s for it)
// and adopts nothing yet: the first Apply does.
func New(ctx context.Context, opts Options) (*Reconciler, error) {
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	if opts.Runtime == "" {
		opts.Runtime = DefaultRuntime
	}
	if opts.RestartDelay <= 0 {
		opts.RestartDelay = time.Second
	}
	if opts.DataDir == "" || opts.StateDir == "" {
		return nil, errors.New("reconciler options: DataDir and StateDir are required")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{opts.StateDir, filepath.Join(opts.StateDir, "images"), filepath.Join(opts.StateDir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	c, err := client.New(opts.Address, client.WithTimeout(10*time.Second), client.WithDefaultNamespace(opts.Namespace))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd at %s: %w", opts.Address, err)
	}
	base, cancel := context.WithCancel(namespaces.WithNamespace(context.WithoutCancel(ctx), opts.Namespace))
	r := &Reconciler{opts: opts, client: c, log: log, base: base, cancel: cancel, sups: map[string]*supervisor{}}
	if v, err := c.Version(ctx); err == nil {
		log.Info("containerd connected", "address", opts.Address, "version", v.Version)
	} else {
		c.Close()
		cancel()
		return nil, fmt.Errorf("containerd at %s: %w", opts.Address, err)
	}
	return r, nil
}

// Close stops supervising (containers keep running) and disconnects.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	sups := r.sups
	r.sups = map[string]*supervisor{}
	r.mu.Unlock()
	for _, s := range sups {
		s.detach()
	}
	r.cancel()
	return r.client.Close()
}

// Apply makes the group's containers match m (already verified and
// validated). targets supplies archive targets. sum identifies m (its
// sha256) for the status.
func (r *Reconciler) Apply(ctx context.Context, group string, m *workload.Manifest, sum string, targets Targets) (err error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	ctx = namespaces.WithNamespace(ctx, r.opts.Namespace)
	defer func() {
		r.mu.Lock()
		r.group = group
		if err != nil {
			r.lastErr = err.Error()
		} else {
			r.lastErr, r.applied = "", sum
		}
		r.mu.Unlock()
		r.saveStatus()
	}()
	start := time.Now()

	// 1. Images: all of them, before any container changes.
	imgs := map[string]client.Image{}
	for i := range m.Containers {
		c := &m.Containers[i]
		img, err := r.ensureImage(ctx, c, targets)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		imgs[c.Name] = img
	}

	// 2. Containers.
	want := map[string]*workload.Container{}
	for i := range m.Containers {
		want[m.Containers[i].Name] = &m.Containers[i]
	}
	existing, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", labelGroup, group))
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	have := map[string]client.Container{}
	for _, ctr := range existing {
		have[ctr.ID()] = ctr
	}
	var errs []error
	for id, ctr := range have {
		c, ok := want[id]
		labels, lerr := ctr.Labels(ctx)
		if ok && lerr == nil && labels[labelSpec] == c.SpecHash() {
			continue
		}
		why := "no longer listed"
		if ok {
			why = "definition changed"
		}
		if err := r.remove(ctx, id, ctr); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("container removed", "container", id, "reason", why)
		delete(have, id)
	}
	for _, c := range m.Containers {
		cc := c
		if ctr, ok := have[c.Name]; ok {
			r.adopt(ctx, group, &cc, ctr)
			continue
		}
		ctr, err := r.create(ctx, group, &cc, imgs[c.Name])
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, err))
			continue
		}
		r.adopt(ctx, group, &cc, ctr)
	}
	// Supervisors of containers gone from containerd (removed above, or by hand).
	var gone []*supervisor
	r.mu.Lock()
	for name, s := range r.sups {
		if _, ok := want[name]; !ok {
			gone = append(gone, s)
			delete(r.sups, name)
		}
	}
	r.mu.Unlock()
	for _, s := range gone {
		s.detach()
	}

	// 3. Images nothing uses any more.
	if err := r.gcImages(ctx, imgs); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.log.Info("workloads applied", "group", group, "containers", len(m.Containers), "seconds", time.Since(start).Seconds())
	return nil
}

// remove stops the container's supervisor and task and deletes it with
// its snapshot.
func (r *Reconciler) remove(ctx context.Context, id string, ctr client.Container) error {
	r.mu.Lock()
	s := r.sups[id]
	delete(r.sups, id)
	r.mu.Unlock()
	if s != nil {
		s.detach()
	}
	if err := stopTask(ctx, ctr); err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container %s: %w", id, err)
	}
	return nil
}

// stopTask sends SIGTERM, waits up to stopTimeout, then SIGKILL, and
// deletes the task. No task is fine.
func stopTask(ctx context.Context, ctr client.Container) error {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := task.Status(ctx)
	if err == nil && st.Status != client.Stopped && st.Status != client.Created {
		exit, err := task.Wait(ctx)
		if err != nil {
			return err
		}
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		select {
		case <-exit:
		case <-time.After(stopTimeout):
			if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			<-exit
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// gcImages deletes the images in the namespace that no desired container
// uses; containerd's garbage collector then frees their content.
func (r *Reconciler) gcImages(ctx context.Context, keep map[string]client.Image) error {
	names := map[string]bool{}
	for _, img := range keep {
		names[img.Name()] = true
	}
	list, err := r.client.ImageService().List(ctx)
	if err != nil {
		return fmt.Errorf("listing images: %w", err)
	}
	var errs []error
	for i, img := range list {
		if names[img.Name] {
			continue
		}
		var opts []images.DeleteOpt
		if i == len(list)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := r.client.ImageService().Delete(ctx, img.Name, opts...); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting image %s: %w", img.Name, err))
			continue
		}
		r.log.Info("image deleted", "image", img.Name)
	}
	return errors.Join(errs...)
}

// sortedNames lists map keys in order.
func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

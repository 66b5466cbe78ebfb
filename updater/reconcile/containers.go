package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/plumb-os/plumb/format/workload"
)

// create makes a new container (not started) from c.
func (r *Reconciler) create(ctx context.Context, group string, c *workload.Container, img client.Image) (client.Container, error) {
	var mounts []specs.Mount
	for _, m := range c.Mounts {
		src := filepath.Join(r.opts.DataDir, group, filepath.FromSlash(m.Source))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, fmt.Errorf("mount source %s: %w", src, err)
		}
		opts := []string{"rbind", "rw"}
		if m.ReadOnly {
			opts = []string{"rbind", "ro"}
		}
		mounts = append(mounts, specs.Mount{Type: "bind", Source: src, Destination: m.Target, Options: opts})
	}
	env := make([]string, 0, len(c.Env))
	for _, k := range sortedNames(c.Env) {
		env = append(env, k+"="+c.Env[k])
	}
	specOpts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithHostNamespace(specs.NetworkNamespace),
		withHostFile("/etc/hosts"),
		withHostFile("/etc/resolv.conf"),
		oci.WithEnv(env),
		oci.WithMounts(mounts),
	}
	if len(c.Command) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(c.Command...))
	}
	labels := map[string]string{labelGroup: group, labelSpec: c.SpecHash(), labelName: c.Name}
	ctr, err := r.client.NewContainer(ctx, c.Name,
		client.WithImage(img),
		client.WithSnapshotter(r.opts.Snapshotter),
		client.WithNewSnapshot(c.Name+"-rootfs", img),
		client.WithContainerLabels(labels),
		client.WithRuntime(r.opts.Runtime, nil),
		client.WithNewSpec(specOpts...),
	)
	if errdefs.IsAlreadyExists(err) {
		// Left by an interrupted apply without our labels: replace it.
		if old, lerr := r.client.LoadContainer(ctx, c.Name); lerr == nil {
			if rerr := r.remove(ctx, c.Name, old); rerr != nil {
				return nil, rerr
			}
			return r.create(ctx, group, c, img)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating: %w", err)
	}
	r.log.Info("container created", "container", c.Name, "image", c.Image)
	return ctr, nil
}

// adopt makes sure a supervisor runs for ctr (new or found in containerd).
// An existing supervisor of the same container keeps running, with c's
// restart policy and health check.
func (r *Reconciler) adopt(_ context.Context, group string, c *workload.Container, ctr client.Container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sups[c.Name]; ok && s.ctr.ID() == ctr.ID() {
		s.setSpec(c)
		return
	}
	s := &supervisor{
		r: r, ctr: ctr, group: group, stop: make(chan struct{}), done: make(chan struct{}),
		status: ContainerStatus{Name: c.Name, Image: c.Image, Digest: c.Digest(), State: StateCreated},
	}
	s.setSpec(c)
	r.sups[c.Name] = s
	go s.run(r.base)
}

// Container states in the status.
const (
	StateCreated    = "created"
	StateRunning    = "running"
	StateRestarting = "restarting" // exited, restart pending
	StateExited     = "exited"     // exited, policy says stay stopped
	StateFailed     = "failed"     // could not be started
)

// ContainerStatus is one container as plumbd status shows it.
type ContainerStatus struct {
	Name      string    `json:"name"`
	Image     string    `json:"image"`
	Digest    string    `json:"digest"`
	State     string    `json:"state"`
	PID       uint32    `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	ExitCode  *uint32   `json:"exit_code,omitempty"` // of the last exit
	Health    string    `json:"health,omitempty"`    // healthy, unhealthy, or "" without a check
	StartedAt time.Time `json:"started_at,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// supervisor keeps one container's task running per its policy.
type supervisor struct {
	r     *Reconciler
	ctr   client.Container
	group string
	stop  chan struct{} // closed by detach
	done  chan struct{} // closed when run returns
	once  sync.Once

	mu     sync.Mutex
	spec   workload.Container
	status ContainerStatus
}

func (s *supervisor) setSpec(c *workload.Container) {
	s.mu.Lock()
	s.spec = *c
	s.mu.Unlock()
}

func (s *supervisor) snapshot() ContainerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	return st
}

func (s *supervisor) update(f func(*ContainerStatus)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
	s.r.saveStatus()
}

// detach stops supervising (the task is left alone) and waits for run to
// return.
func (s *supervisor) detach() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// run starts (or attaches to) the task and restarts it per policy until
// detached.
func (s *supervisor) run(ctx context.Context) {
	defer close(s.done)
	log := s.r.log.With("container", s.ctr.ID())
	delay := s.r.opts.RestartDelay
	for {
		task, exitCh, err := s.startOrAttach(ctx)
		if err != nil {
			log.Error("container not started", "err", err)
			s.update(func(st *ContainerStatus) { st.State, st.Error, st.PID = StateFailed, err.Error(), 0 })
		} else {
			started := time.Now()
			s.update(func(st *ContainerStatus) {
				st.State, st.PID, st.Error, st.StartedAt = StateRunning, task.Pid(), "", started.UTC()
			})
			hctx, hstop := context.WithCancel(ctx)
			go s.health(hctx, task)
			var code uint32
			select {
			case <-s.stop:
				hstop()
				return
			case es := <-exitCh:
				hstop()
				code = es.ExitCode()
			}
			if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				log.Warn("deleting exited task", "err", err)
			}
			if time.Since(started) > 10*time.Second {
				delay = s.r.opts.RestartDelay
			}
			s.mu.Lock()
			policy := s.spec.RestartPolicy()
			s.mu.Unlock()
			restart := policy == workload.RestartAlways || (policy == workload.RestartOnFailure && code != 0)
			log.Info("container exited", "exit_code", code, "restart", restart)
			s.update(func(st *ContainerStatus) {
				c := code
				st.ExitCode, st.PID = &c, 0
				st.State = StateExited
				if restart {
					st.State = StateRestarting
				}
			})
			if !restart {
				<-s.stop
				return
			}
		}
		select {
		case <-s.stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
		if err == nil {
			s.update(func(st *ContainerStatus) { st.Restarts++ })
		}
	}
}

// startOrAttach returns the container's running task (adopting one that
// runs already) or starts a new one, with its exit channel.
func (s *supervisor) startOrAttach(ctx context.Context) (client.Task, <-chan client.ExitStatus, error) {
	task, err := s.ctr.Task(ctx, nil)
	if err == nil {
		st, serr := task.Status(ctx)
		if serr == nil && (st.Status == client.Running || st.Status == client.Paused) {
			ch, err := task.Wait(ctx)
			if err != nil {
				return nil, nil, err
			}
			return task, ch, nil
		}
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return nil, nil, fmt.Errorf("deleting stale task: %w", err)
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, nil, err
	}
	logFile := filepath.Join(s.r.opts.StateDir, "logs", s.ctr.ID()+".log")
	task, err = s.ctr.NewTask(ctx, cio.LogFile(logFile))
	if err != nil {
		return nil, nil, fmt.Errorf("creating task: %w", err)
	}
	ch, err := task.Wait(ctx)
	if err != nil {
		task.Delete(ctx, client.WithProcessKill)
		return nil, nil, err
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx, client.WithProcessKill)
		return nil, nil, fmt.Errorf("starting task: %w", err)
	}
	return task, ch, nil
}

// health runs the container's health check every interval while its task
// lives; Retries failures in a row kill the task (the policy decides what
// follows).
func (s *supervisor) health(ctx context.Context, task client.Task) {
	s.mu.Lock()
	h := s.spec.Health
	s.mu.Unlock()
	if h == nil {
		s.update(func(st *ContainerStatus) { st.Health = "" })
		return
	}
	interval := time.Duration(h.Interval)
	if interval == 0 {
		interval = workload.DefaultInterval
	}
	retries := h.Retries
	if retries == 0 {
		retries = workload.DefaultRetries
	}
	fails := 0
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		err := s.exec(ctx, task, h.Command, n, interval)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fails = 0
			s.update(func(st *ContainerStatus) { st.Health = "healthy" })
			continue
		}
		fails++
		s.r.log.Warn("health check failed", "container", s.ctr.ID(), "failures", fails, "err", err)
		if fails >= retries {
			s.update(func(st *ContainerStatus) { st.Health = "unhealthy" })
			task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
			return
		}
	}
}

// exec runs cmd in the task and waits for it (bounded by timeout).
func (s *supervisor) exec(ctx context.Context, task client.Task, cmd []string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	spec, err := s.ctr.Spec(ctx)
	if err != nil {
		return err
	}
	p := *spec.Process
	p.Args = slices.Clone(cmd)
	p.Terminal = false
	proc, err := task.Exec(ctx, fmt.Sprintf("health-%d", n), &p, cio.NullIO)
	if err != nil {
		return err
	}
	defer proc.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
	ch, err := proc.Wait(ctx)
	if err != nil {
		return err
	}
	if err := proc.Start(ctx); err != nil {
		return err
	}
	select {
	case es := <-ch:
		if es.ExitCode() != 0 {
			return fmt.Errorf("exit status %d", es.ExitCode())
		}
		return nil
	case <-ctx.Done():
		return errors.New("timed out")
	}
}

// withHostFile binds the host's file (host network: its /etc/hosts and
// /etc/resolv.conf) read-only into the container when the host has it; a
// minimal device may have neither.
func withHostFile(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if _, err := os.Stat(path); err != nil {
			return nil
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: path, Type: "bind", Source: path, Options: []string{"rbind", "ro"}})
		return nil
	}
}

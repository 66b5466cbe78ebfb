package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/reconcile"
)

// Workloads is what the agent needs of the reconciler;
// *reconcile.Reconciler.
type Workloads interface {
	Apply(ctx context.Context, group string, m *workload.Manifest, sum string, targets reconcile.Targets) error
}

// workloadRepo is the part of the TUF client the workloads need.
type workloadRepo interface {
	Lookup(ctx context.Context, targetPath string) (fetch.Target, error)
	reconcile.Targets
}

// appliedFile keeps the last manifest applied (verified when fetched), so
// that after a reboot the workloads start again before the network is up.
const appliedFile = "workloads.json"

// osSettled reports whether the running slot is committed and no OS update
// is in flight: the only time workloads are reconciled (never during a
// trial boot, never between installing a release and booting it).
func (a *Agent) osSettled() bool {
	return a.state.Phase == PhaseIdle || a.state.Phase == PhaseCommitted
}

// StartWorkloads applies the manifest applied last (kept on the data
// partition), if any, once the OS is settled: containers come back after a
// reboot without waiting for the repository.
func (a *Agent) StartWorkloads(ctx context.Context) error {
	if a.Workloads == nil || a.Config.Workloads == nil || !a.osSettled() {
		return nil
	}
	data, err := os.ReadFile(a.appliedPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading applied workloads: %w", err)
	}
	group := a.Config.Workloads.Group
	m, err := workload.Decode(data, group)
	if err != nil {
		return fmt.Errorf("applied workloads: %w", err)
	}
	sum := sha256.Sum256(data)
	var targets reconcile.Targets
	if r, ok := a.Repo.(workloadRepo); ok {
		targets = r
	}
	if err := a.Workloads.Apply(ctx, group, m, hex.EncodeToString(sum[:]), targets); err != nil {
		return err
	}
	a.appliedSum = hex.EncodeToString(sum[:])
	return nil
}

func (a *Agent) appliedPath() string {
	return filepath.Join(filepath.Dir(a.StatePath), appliedFile)
}

// reconcileWorkloads fetches the group's manifest (signed by the apps
// role) and, when it changed since the last successful apply, applies it.
// A refused manifest or image leaves the containers as they were.
func (a *Agent) reconcileWorkloads(ctx context.Context) error {
	if a.Workloads == nil || a.Config.Workloads == nil || !a.osSettled() {
		return nil
	}
	repo, ok := a.Repo.(workloadRepo)
	if !ok {
		return errors.New("workloads: the repository client cannot look up delegated targets")
	}
	group := a.Config.Workloads.Group
	path := workload.TargetPath(group)
	t, err := repo.Lookup(ctx, path)
	if err != nil {
		if errors.Is(err, fetch.ErrNotFound) {
			a.log().Debug("no workloads published", "target", path)
			return nil
		}
		return a.workloadsFailed(err)
	}
	if t.SHA256 == a.appliedSum && a.state.Workloads == "" {
		return nil
	}
	if t.Length > workload.MaxSize {
		return a.workloadsFailed(fmt.Errorf("target %s: %d bytes, expected at most %d", path, t.Length, workload.MaxSize))
	}
	f, err := os.CreateTemp(filepath.Dir(a.StatePath), ".workloads-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := repo.DownloadFile(ctx, path, f, 0, nil); err != nil {
		return a.workloadsFailed(err)
	}
	data, err := os.ReadFile(f.Name()) // verified, at most workload.MaxSize
	if err != nil {
		return err
	}
	m, err := workload.Decode(data, group)
	if err != nil {
		return a.workloadsFailed(fmt.Errorf("%s: %w", path, err))
	}
	if err := a.Workloads.Apply(ctx, group, m, t.SHA256, repo); err != nil {
		return a.workloadsFailed(err)
	}
	if err := atomicfile.WriteFile(a.appliedPath(), data, 0o644); err != nil {
		return fmt.Errorf("saving applied workloads: %w", err)
	}
	a.appliedSum = t.SHA256
	a.state.Workloads = ""
	a.log().Info("workloads reconciled", "group", group, "sha256", t.SHA256, "containers", len(m.Containers))
	return a.save()
}

func (a *Agent) workloadsFailed(err error) error {
	a.state.Workloads = err.Error()
	a.save()
	return fmt.Errorf("workloads: %w", err)
}

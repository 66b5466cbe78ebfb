package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/config"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/earlyinit"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/reconcile"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/slot"
	"github.com/plumb-os/plumb/updater/workload"
)

// Device paths plumbd uses.
const (
	espMount     = "/run/plumb/esp"
	defaultData  = "/data/plumb"
	espPartName  = "ESP"
	stateFile    = "state.json"
	identityFile = "identity.key" // the device key when there is no TPM
)

// dataDir is where the agent keeps its state on the data partition.
func dataDir(cfg *config.Config) string {
	if cfg != nil && cfg.DataDir != "" {
		return cfg.DataDir
	}
	return defaultData
}

func loadAgentConfig(root string) (*config.Config, error) {
	data, err := os.ReadFile(filepath.Join(root, config.Path))
	if err != nil {
		return nil, err
	}
	return config.Parse(data)
}

// newAgent sets up everything the update loop needs on a booted device.
func newAgent(ctx context.Context, e *env, facts device.Facts, cfg *config.Config) (*agent.Agent, error) {
	if facts.Boot == nil {
		return nil, errors.New("no boot record from plumb-init (/run/plumb/boot.json): not a Plumb boot")
	}
	parts, err := earlyinit.ScanPartitions("/sys/class/block", "/dev", e.log)
	if err != nil {
		return nil, err
	}
	espDev := ""
	for _, p := range parts {
		if p.Name == espPartName && strings.HasPrefix(facts.Boot.RootDevice, "/dev/"+p.Disk) {
			espDev = p.Device
		}
	}
	if espDev == "" {
		return nil, fmt.Errorf("no partition named %s on the boot disk", espPartName)
	}
	if err := os.MkdirAll(espMount, 0o700); err != nil {
		return nil, err
	}
	if err := slot.MountESP(espDev, espMount); err != nil {
		return nil, err
	}
	if err := slot.MountEFIVars(slot.EFIVarsDir); err != nil {
		e.log.Warn("efivarfs not mounted", "err", err)
	}
	dev, err := slot.FromBoot(*facts.Boot, slot.DirESP(espMount), "/sys/class/block", "/dev", e.log)
	if err != nil {
		return nil, err
	}
	dir := dataDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.ReadFile(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	hc, err := httpClient(cfg.CA)
	if err != nil {
		return nil, err
	}
	client, err := fetch.New(fetch.Options{
		Repo: cfg.Repository, MetadataDir: filepath.Join(dir, "tuf"), TrustedRoot: root,
		HTTPClient: hc, Log: e.log,
		Link: fetch.Link{
			Proxy: cfg.Link.Proxy, RateLimit: cfg.Link.RateLimit, Attempts: cfg.Link.Attempts,
			RequestTimeout: time.Duration(cfg.Link.RequestTimeout), IdleTimeout: time.Duration(cfg.Link.IdleTimeout),
		},
	})
	if err != nil {
		return nil, err
	}
	id, err := identity.Load(identity.TPMDevices, filepath.Join(dir, identityFile))
	if err != nil {
		return nil, err
	}
	e.log.Info("device identity", "id", id.ID, "source", id.Source)
	a := &agent.Agent{
		Config: cfg, Facts: facts, Repo: client, Device: dev,
		StatePath: filepath.Join(dir, stateFile), DeviceID: id.ID, Log: e.log,
	}
	rep := report.New(ctx, cfg.ReportBase(), report.Device{ID: id.ID, PublicKey: id.PublicKey}, hc, e.log)
	if rep != nil {
		var last string
		a.OnSave = func(st *agent.State) {
			// A change of phase, version, event or result is reported;
			// a poll that changes only its time is not.
			key := fmt.Sprintf("%s|%s|%s|%s|%d", st.Phase, st.Version, st.Event, st.LastResult, st.Bytes*10/max(st.Total, 1))
			if key == last {
				return
			}
			last = key
			s := *st
			rep.Send(agentStatus{AgentVersion: agentVersion(), Facts: facts, Device: id, Update: &s, Rollback: agent.LoadRollback(dir)}, nil)
		}
	}
	if facts.TPM.Present {
		a.Attest = attestor(e, facts, cfg, hc, id.ID)
		a.MeasuredBoot = measuredBoot(e, facts, dir, id.ID)
	}
	if w := cfg.Workloads; w != nil {
		a.Workloads = &lazyReconciler{opts: reconcile.Options{
			Address: w.Containerd, Namespace: w.Namespace, DataDir: cmp.Or(w.DataDir, defaultAppsData),
			StateDir: filepath.Join(dir, appsStateDir), Log: e.log,
		}}
	}
	return a, nil
}

// Workload paths on the device.
const (
	defaultAppsData = "/data/apps" // mount sources: /data/apps/<group>/<source>
	appsStateDir    = "apps"       // in the agent's data dir: archives, logs, status.json
)

// lazyReconciler connects to containerd on first use (init starts
// containerd just before plumbd; it may not answer yet) and again after a
// failed connection.
type lazyReconciler struct {
	opts reconcile.Options
	mu   sync.Mutex
	r    *reconcile.Reconciler
}

func (l *lazyReconciler) Apply(ctx context.Context, group string, m *workload.Manifest, sum string, targets reconcile.Targets) error {
	l.mu.Lock()
	if l.r == nil {
		r, err := reconcile.New(ctx, l.opts)
		if err != nil {
			l.mu.Unlock()
			return err
		}
		l.r = r
	}
	r := l.r
	l.mu.Unlock()
	return r.Apply(ctx, group, m, sum, targets)
}

// httpClient trusts the system roots plus caFile, if given, and takes a
// proxy from the environment (HTTPS_PROXY).
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: expected PEM certificates, found none", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	// No overall timeout: a release over a slow link takes as long as it
	// takes; the fetch client bounds requests and idle downloads instead.
	return &http.Client{Transport: tr}, nil
}

// runAgent announces the device on stdout (the console under init) and
// then keeps it up to date when the image names a repository.
func runAgent(ctx context.Context, e *env, o runOptions) error {
	f := device.Probe(o.root)
	fmt.Fprintf(e.stdout, "plumbd %s started: release=%s version=%s slot=%s tpm=%t\n",
		agentVersion(), f.Release.Name, f.Release.Version, f.Slot, f.TPM.Present)
	cfg, err := loadAgentConfig(o.root)
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	if cfg.Repository == "" {
		e.log.Info("no repository configured: not updating")
		<-ctx.Done()
		return nil
	}
	a, err := newAgent(ctx, e, f, cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/buildinfo"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/earlyinit"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/reconcile"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/slot"
	"github.com/plumb-os/plumb/updater/wake"
)

// Paths on a device.
const (
	// ESPMount is where New mounts the boot disk's ESP.
	ESPMount = "/run/plumb/esp"
	// DefaultDataDir is the agent's directory on the data partition when
	// the config names none.
	DefaultDataDir = "/data/plumb"
	// StateFile (state.json) and IdentityFile (the device key when there
	// is no TPM) are in the data dir.
	StateFile    = "state.json"
	IdentityFile = "identity.key"
	// SessionsFile keeps TLS session tickets across polls and restarts
	// (fetch.SessionCache).
	SessionsFile = "tls-sessions.json"
	// WakeFile is the wake-up channel's state (deviceapi.WakeStatus),
	// written by the channel at each change, read by plumbd status.
	WakeFile = "wake.json"
	// DefaultAppsData holds the workloads' mount sources
	// (/data/apps/<group>/<source>); AppsStateDir, in the data dir, their
	// archives, logs and status.json.
	DefaultAppsData = "/data/apps"
	AppsStateDir    = "apps"
	// ReportsDir, in the data dir, keeps the status reports not sent yet
	// (offline).
	ReportsDir = "reports"
	// APISocket is the local API's socket (updater/localapi).
	APISocket = "/run/plumb/agent.sock"
)

// DataDir is where the agent keeps its state on the data partition.
func DataDir(cfg *config.Config) string {
	if cfg != nil && cfg.DataDir != "" {
		return cfg.DataDir
	}
	return DefaultDataDir
}

// LoadConfig reads agent.json below root ("/" on a device).
func LoadConfig(root string) (*config.Config, error) {
	data, err := os.ReadFile(filepath.Join(root, config.Path))
	if err != nil {
		return nil, err
	}
	return config.Parse(data)
}

// HTTPClient trusts the system roots plus caFile, if given, and takes a
// proxy from the environment (HTTPS_PROXY). TLS sessions are kept in
// sessionFile ("" keeps them in memory only) so that a poll on a new
// connection resumes the session (fetch.TLSConfig, docs/wire.md).
func HTTPClient(caFile, sessionFile string, log *slog.Logger) (*http.Client, error) {
	var pool *x509.CertPool
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if pool, err = x509.SystemCertPool(); err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: expected PEM certificates, found none", caFile)
		}
	}
	var sessions tls.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	if sessionFile != "" {
		sessions = fetch.NewSessionCache(sessionFile, log)
	}
	// No overall timeout: a release over a slow link takes as long as it
	// takes; the fetch client bounds requests and idle downloads instead.
	return &http.Client{Transport: fetch.NewTransport(fetch.TLSConfig(pool, sessions))}, nil
}

// FetchOptions maps an agent config to the TUF client's options: the one
// place the config's repository and link settings become fetch's. The
// installer (plumbd install) and the agent both use it.
func FetchOptions(cfg *config.Config, metadataDir string, trustedRoot []byte, hc *http.Client, log *slog.Logger) fetch.Options {
	return fetch.Options{
		Repo: cfg.Repository, MetadataDir: metadataDir, TrustedRoot: trustedRoot, HTTPClient: hc, Log: log,
		Link: fetch.Link{
			Proxy: cfg.Link.Proxy, RateLimit: cfg.Link.RateLimit, Attempts: cfg.Link.Attempts,
			RequestTimeout: time.Duration(cfg.Link.RequestTimeout), IdleTimeout: time.Duration(cfg.Link.IdleTimeout),
		},
	}
}

// Status is what `plumbd status` prints and what the agent reports to the
// repository's status endpoint.
type Status struct {
	AgentVersion string `json:"agent_version"`
	device.Facts
	Device *identity.Identity `json:"device,omitempty"`
	Update *State             `json:"update,omitempty"`
	// Workloads is the reconciler's last report (status.json), when the
	// device runs workloads.
	Workloads *reconcile.Status `json:"workloads,omitempty"`
	// Rollback explains the last failed trial boot (RollbackFile).
	Rollback *Rollback `json:"rollback,omitempty"`
	// Wake is the wake-up channel's state (WakeFile), when the config
	// turns it on.
	Wake *deviceapi.WakeStatus `json:"wake,omitempty"`
}

// Env is what New set up, for the hooks it is given (WithAttestation).
type Env struct {
	Config     *config.Config
	Facts      device.Facts
	HTTPClient *http.Client // the device's mutual-TLS client for the fleet service
	DeviceID   string
	DataDir    string
	Log        *slog.Logger
}

type options struct {
	log    *slog.Logger
	attest func(Env) (func(context.Context) *Attestation, func(context.Context, *release.Facts) error)
}

// Option configures New.
type Option func(*options)

// WithLogger sets the agent's logger (replaces; default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAttestation gives New the TPM side (replaces): on a device with a
// TPM, mk returns the attestation run (Agent.Attest) and the attested
// commit's check (Agent.MeasuredBoot). plumbd passes attest's; the agent
// does not import attest itself.
func WithAttestation(mk func(Env) (func(context.Context) *Attestation, func(context.Context, *release.Facts) error)) Option {
	return func(o *options) { o.attest = mk }
}

// New sets up everything the update loop needs on a booted device, in
// this order: the boot disk's ESP mounted at ESPMount (and efivarfs), the
// slots from plumb-init's boot record, the data dir, the TUF client
// (FetchOptions), the device identity, the status report hook, the
// attestation hooks and the workload reconciler. facts is the running
// system (device.Probe).
func New(ctx context.Context, cfg *config.Config, facts device.Facts, opts ...Option) (*Agent, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if facts.Boot == nil {
		return nil, errors.New("no boot record from plumb-init (/run/plumb/boot.json): not a Plumb boot")
	}
	parts, err := earlyinit.ScanPartitions("/sys/class/block", "/dev", log)
	if err != nil {
		return nil, err
	}
	espDev := ""
	for _, p := range parts {
		if p.Name == disklayout.NameESP && strings.HasPrefix(facts.Boot.RootDevice, "/dev/"+p.Disk) {
			espDev = p.Device
		}
	}
	if espDev == "" {
		return nil, fmt.Errorf("no partition named %s on the boot disk", disklayout.NameESP)
	}
	if err := os.MkdirAll(ESPMount, 0o700); err != nil {
		return nil, err
	}
	if err := slot.MountESP(espDev, ESPMount); err != nil {
		return nil, err
	}
	if err := slot.MountEFIVars(slot.EFIVarsDir); err != nil {
		log.Warn("efivarfs not mounted", "err", err)
	}
	dev, err := slot.FromBoot(*facts.Boot, slot.DirESP(ESPMount), "/sys/class/block", "/dev", log)
	if err != nil {
		return nil, err
	}
	dir := DataDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, err := os.ReadFile(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	hc, err := HTTPClient(cfg.CA, filepath.Join(dir, SessionsFile), log)
	if err != nil {
		return nil, err
	}
	client, err := fetch.New(FetchOptions(cfg, filepath.Join(dir, "tuf"), root, hc, log))
	if err != nil {
		return nil, err
	}
	id, err := identity.Load(identity.TPMDevices, filepath.Join(dir, IdentityFile))
	if err != nil {
		return nil, err
	}
	log.Info("device identity", "id", id.ID, "source", id.Source)
	a := &Agent{
		Config: cfg, Facts: facts, Repo: client, Device: dev,
		StatePath: filepath.Join(dir, StateFile), DeviceID: id.ID, Log: log,
	}
	// The fleet service's endpoints take the device's client certificate;
	// TUF downloads go without (no TPM signature per connection).
	dc, err := report.DeviceClient(hc, id, cfg.JoinToken)
	if err != nil {
		return nil, err
	}
	rep := report.New(ctx, cfg.ReportBase(), report.Device{ID: id.ID, PublicKey: id.PublicKey}, dc, log)
	if err := rep.QueueIn(filepath.Join(dir, ReportsDir), 0); err != nil {
		log.Warn("status reports made offline will not be kept", "err", err)
	}
	var wakeCh *wake.Channel // set below when the config has wake
	if rep != nil {
		var last string
		a.OnSave = func(st *State) {
			// A change of phase, version, event or result, or of a
			// container's state, is reported; a poll that changes only
			// its time is not.
			ws := a.workloadStatus()
			key := fmt.Sprintf("%s|%s|%s|%s|%d|%s", st.Phase, st.Version, st.Event, st.LastResult, st.Bytes*10/max(st.Total, 1), workloadKey(ws))
			if key == last {
				return
			}
			last = key
			s := *st
			var wk *deviceapi.WakeStatus
			if wakeCh != nil {
				w := wakeCh.Status()
				wk = &w
			}
			rep.Send(Status{AgentVersion: buildinfo.Version, Facts: facts, Device: id, Update: &s, Workloads: ws, Rollback: LoadRollback(dir), Wake: wk}, nil)
		}
	}
	if cfg.Wake != nil && cfg.ReportBase() != "" {
		// Its own transport: one held connection, no TCP keep-alive
		// probes (wake.Transport); the same identity and join token.
		tr, ok := hc.Transport.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("wake channel: expected an *http.Transport, got %T", hc.Transport)
		}
		wc, err := report.DeviceClient(&http.Client{Transport: wake.Transport(tr)}, id, cfg.JoinToken)
		if err != nil {
			return nil, err
		}
		ch, err := wake.New(wake.Options{URL: wake.URL(cfg.ReportBase(), id.ID), Client: wc, Log: log, StatusFile: filepath.Join(dir, WakeFile)})
		if err != nil {
			return nil, err
		}
		go ch.Run(ctx)
		a.Wake, wakeCh = ch, ch
	}
	if facts.TPM.Present && o.attest != nil {
		a.Attest, a.MeasuredBoot = o.attest(Env{Config: cfg, Facts: facts, HTTPClient: dc, DeviceID: id.ID, DataDir: dir, Log: log})
	}
	if w := cfg.Workloads; w != nil {
		a.Workloads = &lazyReconciler{opts: reconcile.Options{
			Address: w.Containerd, Namespace: w.Namespace, DataDir: cmp.Or(w.DataDir, DefaultAppsData),
			StateDir: filepath.Join(dir, AppsStateDir), Log: log, AgentSocket: APISocket,
			// Mount sources must never reach what plumbd trusts.
			Protected: slices.DeleteFunc([]string{dir, cfg.Root, cfg.CA}, func(p string) bool { return p == "" }),
		}}
	}
	return a, nil
}

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

// status is the reconciler's status; nil before it first connected.
func (l *lazyReconciler) status() *reconcile.Status {
	l.mu.Lock()
	r := l.r
	l.mu.Unlock()
	if r == nil {
		return nil
	}
	st := r.Status()
	return &st
}

// workloadStatus is the workloads' status for a report; nil without
// workloads.
func (a *Agent) workloadStatus() *reconcile.Status {
	if l, ok := a.Workloads.(*lazyReconciler); ok {
		return l.status()
	}
	return nil
}

// workloadKey sums up what a report of ws should show a change of: each
// container's state, health and restarts, and the last error.
func workloadKey(ws *reconcile.Status) string {
	if ws == nil {
		return ""
	}
	k := ws.Manifest + "|" + ws.LastError
	for _, c := range ws.Containers {
		k += fmt.Sprintf("|%s %s %s %d", c.Name, c.State, c.Health, c.Restarts)
	}
	return k
}

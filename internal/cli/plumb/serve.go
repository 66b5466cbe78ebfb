package plumb

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/rollout"
	"github.com/plumb-os/plumb/server/store"
)

func init() { cli.RegisterBadInput(server.ErrBadInput) }

type serveOptions struct {
	dir       string
	addr      string
	hosts     []string
	certDir   string
	accessLog bool
	db        string
	maxEvents int64
	retention time.Duration
	attest    bool
	ekCAs     []string
	silent    time.Duration      // the page lists devices silent for longer
	wake      server.WakeOptions // the wake-up channel's caps and heartbeat
	joinRate  float64
	cpuProf   string
	watch     bool           // run the halt controller (rollout.go)
	policy    rolloutOptions // its policy flags
}

func newServeCmd(e *cli.Env) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve a repository (DIR/repository) over HTTPS to devices",
		Long: `Serve serves the TUF repository in DIR/repository over HTTPS: metadata at
https://ADDR/metadata/ and targets at https://ADDR/targets/. Static files
only: GET and HEAD, Range, strong ETags with If-None-Match, Cache-Control
(no-cache for timestamp.json and root.json, immutable for versioned metadata
and content-addressed targets). Any static server can serve the same
directory instead (docs/nginx.md).

It is also the fleet service (docs/fleet.md, API in docs/api.md): devices,
authenticated by mutual TLS with their identity key, post their status to
POST /v1/devices/ID/status; their history, organizations, operators, API
tokens and the audit log are kept in the database --db (default the SQLite
file DIR/fleet.db; or postgres://...). On first start with no organization
it makes the organization "default" and writes its join token to
DIR/join-token: build images with plumb build --join-token DIR/join-token.
Operators use the web page at https://ADDR/ui/ (first start: the
operator "admin" of "default", its password in DIR/admin-password) and the
API under /v1/orgs/ORG/ (plumb fleet).

Devices configured for it (agent wake, docs/wake.md) hold one HTTPS
stream each, GET /v1/devices/ID/wake, that says when timestamp.json changed
so they poll at once. Only an enrolled device may hold one, for its own id
(mutual TLS, as for reports), and one at a time: a newer stream replaces
its older one. --wake-max and --wake-max-per-org cap those streams (each
is a file descriptor: raise ulimit -n to match), past which devices simply
poll; a stream whose device is gone ends within --wake-heartbeat plus
--wake-timeout.

With --attest (the default) it is also the attestation verifier for devices
(docs/attestation.md): GET /v1/attest/nonce?device=ID, POST /v1/attest/enroll,
/v1/attest/activate and /v1/attest/evidence (answered with the report, kept
in the device's history). EK certificates are checked against the --ek-ca
files (PEM: the TPM manufacturers' roots and intermediates).

The first run makes a development CA (DIR/tls/ca.pem, key ca.key) and a
server certificate signed by it for 127.0.0.1, localhost, 10.0.2.100 (the
host as QEMU guests see it) and every --host; later runs reuse them. Devices
and plumbd fetch trust ca.pem. Serve runs until Ctrl-C.

With --rollout-watch (the default, when DIR holds a repository and the
fleet service is on) it runs the halt controller of plumb rollout watch on
the fleet database's per-release outcomes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runServe(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8443", "address to listen on (port 0 picks a free port)")
	f.StringArrayVar(&o.hosts, "host", nil, "extra name or IP address for the server certificate (repeatable; added to the defaults)")
	f.StringVar(&o.certDir, "tls-dir", "", "directory of the development CA and server certificate (default DIR/tls)")
	f.BoolVar(&o.accessLog, "access-log", true, "log every request on stderr")
	f.StringVar(&o.db, "db", "", `fleet database: a SQLite file or a postgres:// URL (default DIR/fleet.db; "off": no fleet service and no attestation)`)
	f.Int64Var(&o.maxEvents, "history", store.DefaultMaxEvents, "history entries kept per device (oldest dropped first)")
	f.DurationVar(&o.retention, "retention", 0, "drop device history older than this, e.g. 2160h (0 keeps it, bounded by --history)")
	f.BoolVar(&o.attest, "attest", true, "serve the attestation verifier endpoints (/v1/attest/...)")
	f.StringArrayVar(&o.ekCAs, "ek-ca", nil, "PEM file of TPM manufacturer CA certificates that EK certificates must chain to (repeatable)")
	f.DurationVar(&o.silent, "silent-after", server.DefaultSilentAfter, "the page lists a device as silent after this long without a report (three polls)")
	f.IntVar(&o.wake.MaxHeld, "wake-max", server.DefaultWakeMaxHeld, "held wake-up streams in all (docs/wake.md)")
	f.IntVar(&o.wake.MaxHeldPerOrg, "wake-max-per-org", server.DefaultWakeMaxHeldPerOrg, "held wake-up streams per organization")
	f.DurationVar(&o.wake.Heartbeat, "wake-heartbeat", server.DefaultWakeHeartbeat, "time between heartbeats on an idle wake-up stream (under the NATs' idle timeout)")
	f.DurationVar(&o.wake.Timeout, "wake-timeout", server.DefaultWakeTimeout, "time a write to a wake-up stream may block or stay unacknowledged before the stream is dropped")
	f.Float64Var(&o.joinRate, "join-rate", 20, "devices that may join one organization per second, per process (bursts of 10 s worth)")
	f.StringVar(&o.cpuProf, "cpu-profile", "", "write a CPU profile of the server to this file until it stops (go tool pprof)")
	f.BoolVar(&o.watch, "rollout-watch", true, "halt releases whose failure rate in the fleet database passes --failure-threshold (plumb rollout watch)")
	addWatchFlags(cmd, &o.policy)
	return cmd
}

func runServe(ctx context.Context, e *cli.Env, o serveOptions) error {
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return cli.BadInput(fmt.Errorf("--addr %q: expected HOST:PORT like 127.0.0.1:8443: %w", o.addr, err))
	}
	log := e.Log
	if o.accessLog {
		log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.wake.MaxHeld <= 0 || o.wake.MaxHeldPerOrg <= 0 || o.wake.Heartbeat < time.Second || o.wake.Timeout < time.Second {
		return cli.BadInput(fmt.Errorf("--wake-max %d, --wake-max-per-org %d, --wake-heartbeat %s, --wake-timeout %s: expected positive caps, a heartbeat and a timeout of at least 1s", o.wake.MaxHeld, o.wake.MaxHeldPerOrg, o.wake.Heartbeat, o.wake.Timeout))
	}
	var fleet *server.FleetOptions
	if o.db != "off" {
		if o.maxEvents <= 0 || o.retention < 0 {
			return cli.BadInput(fmt.Errorf("--history %d, --retention %s: expected a positive count and a duration >= 0", o.maxEvents, o.retention))
		}
		if o.silent <= 0 {
			return cli.BadInput(fmt.Errorf("--silent-after %s: expected a positive duration, like 15m (three 5-minute polls)", o.silent))
		}
		if o.joinRate <= 0 {
			return cli.BadInput(fmt.Errorf("--join-rate %g: expected a positive number of devices per second", o.joinRate))
		}
		fleet = &server.FleetOptions{DB: o.db, MaxEvents: o.maxEvents, Retention: o.retention, SilentAfter: o.silent, JoinRate: o.joinRate, Bootstrap: true}
	}
	if o.cpuProf != "" {
		f, err := os.Create(o.cpuProf)
		if err != nil {
			return cli.BadInput(fmt.Errorf("--cpu-profile: %w", err))
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var att *server.AttestOptions
	if o.attest && fleet != nil {
		att = &server.AttestOptions{}
		if len(o.ekCAs) > 0 {
			pool := x509.NewCertPool()
			for _, p := range o.ekCAs {
				pem, err := os.ReadFile(p)
				if err != nil {
					return cli.BadInput(fmt.Errorf("--ek-ca: %w", err))
				}
				if !pool.AppendCertsFromPEM(pem) {
					return cli.BadInput(fmt.Errorf("--ek-ca %s: expected PEM certificates, found none", p))
				}
			}
			att.ManufacturerCAs = pool
		}
	}
	s, err := server.NewContext(ctx, server.Options{
		Addr:    o.addr,
		Dir:     o.dir,
		CertDir: o.certDir,
		Hosts:   append(server.DefaultHosts(), o.hosts...),
		Fleet:   fleet,
		Log:     log,
		Attest:  att,
		Wake:    o.wake,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.addr, err)
	}
	repo, err := filepath.Abs(filepath.Join(o.dir, "repository"))
	if err != nil {
		repo = filepath.Join(o.dir, "repository")
	}
	ca, err := filepath.Abs(s.CACertPath())
	if err != nil {
		ca = s.CACertPath()
	}
	url := "https://" + displayAddr(l.Addr()) + "/"
	fmt.Fprintf(e.Stdout, "serving %s\n", repo)
	fmt.Fprintf(e.Stdout, "URL:  %s  (metadata %smetadata/, targets %stargets/)\n", url, url, url)
	fmt.Fprintf(e.Stdout, "CA:   %s  (devices and plumbd fetch trust this file)\n", ca)
	if fleet != nil {
		if _, err := os.Stat(filepath.Join(o.dir, server.JoinTokenFile)); err == nil {
			fmt.Fprintf(e.Stdout, "Join: %s  (plumb build --join-token: devices join organization default)\n", filepath.Join(o.dir, server.JoinTokenFile))
		}
		login := "operators: plumb fleet user add"
		if pw := filepath.Join(o.dir, server.AdminPasswordFile); fileExists(pw) {
			login = "log in as " + server.BootstrapAdmin + ", password in " + pw
		}
		fmt.Fprintf(e.Stdout, "Page: %sui/  (%s)\n", url, login)
	}
	fmt.Fprintf(e.Stdout, "Ctrl-C stops.\n")
	wctx, stop := context.WithCancel(ctx)
	var outcomes rollout.Outcomes
	if st := s.Store(); st != nil {
		outcomes = st
	}
	wait, err := startServeWatcher(wctx, e, o, outcomes, log)
	if err != nil {
		stop()
		l.Close()
		return err
	}
	defer func() { stop(); wait() }()
	return s.Serve(ctx, l)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// displayAddr is the listener's address as a client would dial it: a
// wildcard listen address is shown as 127.0.0.1.
func displayAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}

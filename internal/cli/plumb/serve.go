package plumb

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/server"
)

func init() { cli.RegisterBadInput(server.ErrBadInput) }

type serveOptions struct {
	dir       string
	addr      string
	hosts     []string
	certDir   string
	accessLog bool
	reports   string
	attest    bool
	ekCAs     []string
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

With --attest (the default) it is also the attestation verifier for devices
(docs/attestation.md): GET /v1/attest/nonce?device=ID, POST /v1/attest/enroll,
/v1/attest/activate and /v1/attest/evidence (answered with the report), and
GET /v1/devices/ID/attestation (the device's latest report). Enrollments and
reports are kept in DIR/attest. EK certificates are checked against the
--ek-ca files (PEM: the TPM manufacturers' roots and intermediates).

The first run makes a development CA (DIR/tls/ca.pem, key ca.key) and a
server certificate signed by it for 127.0.0.1, localhost, 10.0.2.100 (the
host as QEMU guests see it) and every --host; later runs reuse them. Devices
and plumbd fetch trust ca.pem. Serve runs until Ctrl-C.

Devices report their status to POST /v1/devices/<id>/status (plumbd's
"report" setting, by default the repository URL); the last report of each
device is kept as --reports DIR/<id>.json and served at GET /v1/devices and
GET /v1/devices/<id>.`,
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
	f.StringVar(&o.reports, "reports", "", `directory of device status reports (POST /v1/devices/ID/status, GET /v1/devices[/ID]); default DIR/reports, "off" disables`)
	f.BoolVar(&o.attest, "attest", true, "serve the attestation verifier endpoints (/v1/attest/...)")
	f.StringArrayVar(&o.ekCAs, "ek-ca", nil, "PEM file of TPM manufacturer CA certificates that EK certificates must chain to (repeatable)")
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
	var att *server.AttestOptions
	if o.attest {
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
	s, err := server.New(server.Options{
		Addr:    o.addr,
		Dir:     o.dir,
		CertDir: o.certDir,
		Hosts:   append(server.DefaultHosts(), o.hosts...),
		Reports: reportsDir(o),
		Log:     log,
		Attest:  att,
	})
	if err != nil {
		return err
	}
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
	fmt.Fprintf(e.Stdout, "Ctrl-C stops.\n")
	return s.Serve(ctx, l)
}

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

func reportsDir(o serveOptions) string {
	switch o.reports {
	case "off":
		return ""
	case "":
		return filepath.Join(o.dir, "reports")
	}
	return o.reports
}

// Package server owns `plumb serve`: it serves a Plumb TUF repository
// (DIR/repository, laid out by `plumb repo init` and `plumb publish`) over
// HTTPS to devices and `plumbd fetch`, and the development CA that its
// certificate chains to.
//
// New loads or makes the CA and server certificate in Options.CertDir, then
// Serve answers on a listener until its context ends; Handler is the same
// file server without TLS. For the repository the server is a static file
// server and nothing more: any other static server (nginx, an object store,
// a CDN) can serve the same directory (docs/nginx.md). With
// Options.Fleet it is also the fleet service (docs/fleet.md): devices,
// authenticated by mutual TLS with their identity key, post status
// reports (fleet.go) and attestation evidence (attest.go, with
// Options.Attest); operators read and act through the JSON API under /v1/
// (api.go). Everything the fleet service keeps is in its database
// (server/store), none in the process, so several servers may share one
// PostgreSQL. It adds the cache headers that make an idle device's poll a
// 304 of a few hundred bytes. A Server is safe for concurrent use.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/plumb-os/plumb/server/store"
)

// ErrBadInput marks errors caused by the caller's options (a missing
// repository, a malformed host name).
var ErrBadInput = errors.New("bad serve input")

// shutdownGrace is how long Serve lets running requests finish after its
// context ends before it closes their connections.
const shutdownGrace = 5 * time.Second

// DefaultHosts returns the names the server certificate carries when
// Options.Hosts is empty: the loopback address and name, and 10.0.2.100, the
// address at which QEMU guests reach the host (testvm's guestfwd).
func DefaultHosts() []string { return []string{"127.0.0.1", "localhost", "10.0.2.100"} }

// Options configures New.
type Options struct {
	// Addr is the address the CLI listens on, e.g. "127.0.0.1:8443". New
	// does not use it; Serve takes a listener.
	Addr string
	// Dir is the repository directory, the one holding repository/.
	Dir string
	// CertDir holds the development CA (ca.pem, ca.key) and the server's
	// certificate (server.pem, server.key). Default Dir/tls.
	CertDir string
	// Hosts are the server certificate's subject alternative names (IP
	// addresses or DNS names). Replaces DefaultHosts() when not empty.
	Hosts []string
	// Fleet, when set, adds the fleet service: device status reports,
	// history, organizations and the operator API under /v1/.
	Fleet *FleetOptions
	// Log receives the access log (Info) and server errors; nil discards.
	Log *slog.Logger
	// Attest, when set, adds the verifier endpoints (attest.go); it needs
	// Fleet.
	Attest *AttestOptions
	// ReadTimeout bounds reading one whole request, IdleTimeout a
	// keep-alive connection between requests; defaults 1 min and 2 min.
	ReadTimeout, IdleTimeout time.Duration
	// Wake tunes the devices' wake-up channel (wake.go), part of the
	// fleet service.
	Wake WakeOptions
}

// Server serves one repository directory.
type Server struct {
	root   string // Dir/repository
	caPath string
	cert   tls.Certificate
	log    *slog.Logger
	etags  etagCache
	fleet  *fleet   // nil: no fleet service
	wake   *wakeHub // with fleet: the wake-up channel

	readTimeout, idleTimeout time.Duration
	verify                   *verifier // nil: no attestation endpoints

	requests, notModified, bytesOut atomic.Int64
}

// Stats counts what the server sent since New.
type Stats struct {
	// Requests is every request answered, whatever its status.
	Requests int64
	// NotModified is the responses with status 304.
	NotModified int64
	// BytesOut is the response bytes: bodies as written plus an estimate of
	// the status line and headers (HTTP/1.1 framing, before TLS).
	BytesOut int64
}

// New checks the repository directory and loads the development CA and the
// server certificate from opts.CertDir. On the first run it makes them: an
// ECDSA P-256 CA valid for 10 years and a server certificate for opts.Hosts
// signed by it, and logs where they are. Later runs reuse them; the server
// certificate alone is reissued (by the same CA) when the hosts change or it
// nears its end, so devices that trust the CA keep working.
func New(opts Options) (*Server, error) {
	return NewContext(context.Background(), opts)
}

// NewContext is New with a context for opening the fleet database.
func NewContext(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: no repository directory given", ErrBadInput)
	}
	root := filepath.Join(opts.Dir, "repository")
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s: expected a directory made by `plumb repo init` (with repository/ inside), found no %s", ErrBadInput, opts.Dir, root)
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = DefaultHosts()
	}
	var uniq []string
	for _, h := range hosts {
		if !validHost(h) {
			return nil, fmt.Errorf("%w: host %q: expected an IP address or a DNS name", ErrBadInput, h)
		}
		if !slices.Contains(uniq, h) {
			uniq = append(uniq, h)
		}
	}
	hosts = uniq
	certDir := opts.CertDir
	if certDir == "" {
		certDir = filepath.Join(opts.Dir, "tls")
	}
	pki, err := loadOrCreatePKI(certDir, hosts, time.Now())
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificates from %s: %w", certDir, err)
	}
	switch {
	case pki.created:
		log.Info("created development CA", "ca", pki.caPath, "cert", filepath.Join(certDir, serverCertFile), "hosts", hosts)
	case pki.reissued:
		log.Info("reissued server certificate", "ca", pki.caPath, "cert", filepath.Join(certDir, serverCertFile), "hosts", hosts)
	}
	srv := &Server{root: root, caPath: pki.caPath, cert: pki.cert, log: log,
		readTimeout: cmp.Or(opts.ReadTimeout, time.Minute), idleTimeout: cmp.Or(opts.IdleTimeout, 2*time.Minute)}
	if opts.Fleet != nil {
		if srv.fleet, err = newFleet(ctx, opts.Dir, *opts.Fleet, log); err != nil {
			return nil, err
		}
		srv.wake = newWakeHub(srv, opts.Wake)
		srv.fleet.wake = srv.wake
	}
	if opts.Attest != nil {
		if srv.verify, err = newVerifier(opts.Dir, *opts.Attest, srv.fleet); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return srv, nil
}

// Close ends the held wake streams and closes the fleet database, if any.
func (s *Server) Close() error {
	if s.wake != nil {
		s.wake.close()
	}
	if s.fleet != nil {
		return s.fleet.db.Close()
	}
	return nil
}

// Store is the fleet database; nil without Options.Fleet.
func (s *Server) Store() *store.Store {
	if s.fleet == nil {
		return nil
	}
	return s.fleet.db
}

// CACertPath returns the PEM file of the development CA: the file devices
// and `plumbd fetch` trust.
func (s *Server) CACertPath() string { return s.caPath }

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), NotModified: s.notModified.Load(), BytesOut: s.bytesOut.Load()}
}

// Handler returns the file server without TLS, for tests and for running
// behind another TLS terminator.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve answers HTTPS (HTTP/1.1 and HTTP/2) on l until ctx ends, then shuts
// down gracefully: it stops accepting, lets running requests finish for up to
// 5 s, and closes the rest. It closes l. It returns nil after a shutdown
// caused by ctx, and the error otherwise.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if l == nil {
		return errors.New("serving: no listener")
	}
	// Devices authenticate with a client certificate (fleet.go). It is
	// asked for, never required or chained: TUF clients send none, and
	// the server checks the key against the device id itself.
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert}
	if s.fleet != nil {
		go s.fleet.prune(ctx)
		// Session tickets any server on the database can resume
		// (tickets.go).
		var keys ticketKeys
		keys.install(tlsConfig)
		if err := keys.load(ctx, s.fleet); err != nil {
			s.log.Warn("TLS session ticket keys not loaded from the fleet database: tickets resume on this process only until they are", "err", err)
		}
		go keys.run(ctx, s.fleet)
	}
	srv := &http.Server{
		Handler:   s.Handler(),
		TLSConfig: tlsConfig,
		// A slow client holds a connection for at most these: headers in
		// 10 s, a whole request (the largest is 1 MiB of evidence) in 1
		// min, an idle keep-alive 2 min. No WriteTimeout: a release
		// download over a slow link takes as long as it takes.
		ReadHeaderTimeout: min(10*time.Second, s.readTimeout),
		ReadTimeout:       s.readTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// The wake stream sets TCP_USER_TIMEOUT on its connection
		// (wake.go).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
	}
	if s.wake != nil {
		// Held wake streams end at once on shutdown: devices reconnect
		// to the next server (or poll).
		srv.RegisterOnShutdown(s.wake.close)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(noKeepAliveListener{l}, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("closing connections still busy after the grace period", "grace", shutdownGrace, "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", l.Addr(), err)
	}
	return nil
}

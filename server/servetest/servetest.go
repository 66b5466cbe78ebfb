// Package servetest runs plumb serve's server (package server) inside a
// test, over real HTTPS on 127.0.0.1, for the device side's tests that
// need the real repository, fleet service or wake stream.
package servetest

import (
	"cmp"
	"context"
	"crypto/x509"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/plumb-os/plumb/server"
)

// Server is a running server.Server.
type Server struct {
	*server.Server
	Addr string         // host:port it listens on
	CAs  *x509.CertPool // its development CA, for clients
	// Stop ends it as a restart would: the listener closes, Serve returns
	// (an error from it fails the test) and the server's state is closed.
	// It runs at the end of the test too; calling it again does nothing.
	Stop func()
}

// Start makes server.New(o) and serves it on addr ("": any port on
// 127.0.0.1) until Stop or the end of the test.
func Start(t testing.TB, o server.Options, addr string) *Server {
	t.Helper()
	srv, err := server.New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", cmp.Or(addr, "127.0.0.1:0"))
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("plumb serve: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	ca, err := os.ReadFile(srv.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s: no certificate", srv.CACertPath())
	}
	return &Server{Server: srv, Addr: l.Addr().String(), CAs: pool, Stop: stop}
}

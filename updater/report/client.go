package report

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/updater/identity"
)

// JoinTokenHeader carries the device's join token on its writes to the
// fleet service, which uses it only when it does not know the device yet.
const JoinTokenHeader = deviceapi.JoinTokenHeader

// DeviceClient returns a client for the fleet service's device endpoints
// (status reports, attestation): hc's transport (proxy, trusted CAs) plus
// the device's client certificate, made from its identity key, for mutual
// TLS, and the join token, if any, on every request. The server checks
// that the certificate's key is the one the device id is the hash of.
func DeviceClient(hc *http.Client, id *identity.Identity, joinToken string) (*http.Client, error) {
	cert, err := id.Certificate()
	if err != nil {
		return nil, err
	}
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return nil, fmt.Errorf("device client: expected an *http.Transport, got %T", hc.Transport)
	}
	cfg := &tls.Config{}
	if tr.TLSClientConfig != nil {
		cfg = tr.TLSClientConfig.Clone()
	}
	cfg.Certificates = []tls.Certificate{cert}
	// Its own session cache: a ticket from a connection without the
	// client certificate (TUF fetches) must never resume this one, or the
	// server would see no certificate.
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	tr.TLSClientConfig = cfg
	out := *hc
	out.Transport = &joinTransport{next: tr, token: joinToken}
	return &out, nil
}

// joinTransport adds the join token to each request.
type joinTransport struct {
	next  http.RoundTripper
	token string
}

func (t *joinTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token == "" {
		return t.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set(JoinTokenHeader, t.token)
	return t.next.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport
// under it (http.Client.CloseIdleConnections reaches it through this).
func (t *joinTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

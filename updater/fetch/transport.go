package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
)

// TLSConfig is the device's TLS client configuration, chosen for few bytes
// per poll on a new TCP connection (docs/wire.md has the measurements):
//
//   - sessions (a SessionCache on the data partition) resumes TLS 1.3
//     sessions: no certificate chain and no signature on the wire;
//   - one X25519 key share (32 bytes). Go's default also sends a hybrid
//     post-quantum X25519MLKEM768 share, 1,216 bytes up and 1,120 down on
//     every handshake. Dropping it costs the metadata's confidentiality
//     against a future quantum computer, not its integrity (TUF signatures
//     verify every byte installed); P-256 stays acceptable for servers
//     that want it (one more round trip).
//
// roots nil means the system roots.
func TLSConfig(roots *x509.CertPool, sessions tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		RootCAs:            roots,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: sessions,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
	}
}

// NewTransport is an http.Transport for the device: cfg (see TLSConfig),
// HTTP/1.1 only (HTTP/2's connection preface and settings cost ~100 bytes
// per connection, and a poll sends one request), no Accept-Encoding (nothing
// the repository serves is worth compressing again), proxy from the
// environment (fetch.Link can replace it).
func NewTransport(cfg *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.DisableCompression = true
	return tr
}

// minimalHeaders drops Go's default User-Agent (an idle poll sends only
// Host and If-None-Match).
func minimalHeaders(req *http.Request) {
	req.Header["User-Agent"] = []string{""}
}

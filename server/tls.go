package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Files in Options.CertDir.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca.key"
	serverCertFile = "server.pem"
	serverKeyFile  = "server.key"
)

const (
	// caLifetime is how long the development CA is valid. The server
	// certificate is issued for the CA's remaining lifetime: its clients are
	// devices and plumbd, not browsers with a 398-day rule.
	caLifetime = 10 * 365 * 24 * time.Hour
	// renewBefore: a server certificate closer than this to its end is
	// reissued from the CA at the next start.
	renewBefore = 30 * 24 * time.Hour
)

// devPKI is the loaded development CA and the server's key pair.
type devPKI struct {
	caPath string
	cert   tls.Certificate
	// created and reissued say what New had to make (for its log).
	created, reissued bool
}

// loadOrCreatePKI returns the development CA and a server certificate for
// hosts from dir, making the CA on first use and (re)issuing the server
// certificate when it is missing, expiring or does not name every host.
func loadOrCreatePKI(dir string, hosts []string, now time.Time) (*devPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making TLS directory: %w", err)
	}
	p := &devPKI{caPath: filepath.Join(dir, caCertFile)}
	caCert, caKey, err := loadCA(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		caCert, caKey, err = createCA(dir, now)
		if err != nil {
			return nil, err
		}
		p.created = true
	case err != nil:
		return nil, err
	}
	if !p.created {
		cert, err := loadServerCert(dir, caCert, hosts, now)
		if err == nil {
			p.cert = cert
			return p, nil
		}
		p.reissued = true
	}
	if caKey == nil {
		return nil, fmt.Errorf("issuing server certificate: %s is missing: expected the CA's private key beside %s", filepath.Join(dir, caKeyFile), p.caPath)
	}
	p.cert, err = issueServerCert(dir, caCert, caKey, hosts, now)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// loadCA reads the CA certificate and, when present, its key (nil when the
// key file is missing: a valid server certificate needs no CA key).
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath := filepath.Join(dir, caCertFile)
	der, err := readPEM(certPath, "CERTIFICATE")
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: parsing CA certificate: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%s: expected a CA certificate, got one without the CA flag", certPath)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	kder, err := readPEM(keyPath, "PRIVATE KEY")
	if errors.Is(err, fs.ErrNotExist) {
		return cert, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	key, err := parseECKey(keyPath, kder)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s: key does not match the certificate %s", keyPath, certPath)
	}
	return cert, key, nil
}

func createCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"Plumb"}, CommonName: "Plumb development CA " + host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing new CA certificate: %w", err)
	}
	// Key first: a CA certificate without its key could not issue anything.
	if err := writeKey(filepath.Join(dir, caKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(filepath.Join(dir, caCertFile), "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadServerCert returns the stored server key pair if it chains to ca,
// names every host and is not about to expire.
func loadServerCert(dir string, ca *x509.Certificate, hosts []string, now time.Time) (tls.Certificate, error) {
	certPath := filepath.Join(dir, serverCertFile)
	pair, err := tls.LoadX509KeyPair(certPath, filepath.Join(dir, serverKeyFile))
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: not signed by the CA: %w", certPath, err)
	}
	if now.Add(renewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("%s: outside its validity", certPath)
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return tls.Certificate{}, fmt.Errorf("%s: %w", certPath, err)
		}
	}
	return pair, nil
}

func issueServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"Plumb"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating server certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, serverKeyFile), key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(filepath.Join(dir, serverCertFile), "CERTIFICATE", der, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing new server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// validHost reports whether h can go into a certificate: an IP address or a
// DNS name (letters, digits, '-', '.', an optional leading "*.").
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	name := h
	if len(name) > 2 && name[:2] == "*." {
		name = name[2:]
	}
	if name == "" || len(name) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0
}

func randomSerial() *big.Int {
	// 128 random bits; rand.Int only fails if the system RNG does, and
	// crypto/rand then crashes the program itself.
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		return nil, fmt.Errorf("%s: expected a PEM %q block", path, typ)
	}
	return b.Bytes, nil
}

func parseECKey(path string, der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: parsing private key: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: expected an ECDSA key, got %T", path, k)
	}
	return ek, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), perm)
}

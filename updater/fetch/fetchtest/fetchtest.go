// Package fetchtest builds real signed TUF repositories (go-tuf's metadata
// API, ed25519 keys, consistent snapshots) and serves them over HTTPS for
// the tests of TUF clients. It is for tests only.
package fetchtest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Repo is a real signed TUF repository (consistent snapshots, ed25519
// keys) written with go-tuf's metadata API into dir/{metadata,targets}.
type Repo struct {
	t         testing.TB
	Dir       string
	keys      map[string]ed25519.PrivateKey
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	// TimestampExpires is the expiry of the next published timestamp.
	TimestampExpires time.Time
}

// NewKey makes an ed25519 key.
func NewKey(t testing.TB) (ed25519.PrivateKey, *metadata.Key) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// NewRepo writes version 1 of the root (metadata/1.root.json and root.json);
// nothing else is published until Publish.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	r := &Repo{t: t, Dir: t.TempDir(), keys: map[string]ed25519.PrivateKey{}, TimestampExpires: time.Now().Add(24 * time.Hour)}
	for _, d := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(365 * 24 * time.Hour)
	r.root = metadata.Root(exp)
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		priv, k := NewKey(t)
		r.keys[role] = priv
		if err := r.root.Signed.AddKey(k, role); err != nil {
			t.Fatal(err)
		}
	}
	r.writeRoot(r.keys["root"])
	r.targets = metadata.Targets(exp)
	r.targets.Signed.Version = 0
	r.snapshot = metadata.Snapshot(exp)
	r.snapshot.Signed.Version = 0
	r.timestamp = metadata.Timestamp(exp)
	r.timestamp.Signed.Version = 0
	return r
}

// sign replaces the signatures of m.
func sign[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...ed25519.PrivateKey) {
	t.Helper()
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *Repo) writeRoot(signers ...ed25519.PrivateKey) {
	sign(r.t, r.root, signers...)
	b, err := r.root.ToBytes(true)
	if err != nil {
		r.t.Fatal(err)
	}
	r.Write(fmt.Sprintf("metadata/%d.root.json", r.root.Signed.Version), b)
	r.Write("metadata/root.json", b)
}

// RootJSON is the content of metadata/<version>.root.json.
func (r *Repo) RootJSON(version int64) []byte {
	b, err := os.ReadFile(filepath.Join(r.Dir, "metadata", fmt.Sprintf("%d.root.json", version)))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// Write stores b at name, relative to the repository directory.
func (r *Repo) Write(name string, b []byte) {
	r.t.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// RotateRoot publishes root version+1 with a new root key (and a new
// timestamp key), signed by the new key and, if signedByOld, the old one.
func (r *Repo) RotateRoot(signedByOld bool) {
	old := r.keys["root"]
	r.root.Signed.Version++
	for _, role := range []string{"root", "timestamp"} {
		for _, id := range r.root.Signed.Roles[role].KeyIDs {
			if err := r.root.Signed.RevokeKey(id, role); err != nil {
				r.t.Fatal(err)
			}
		}
		priv, k := NewKey(r.t)
		r.keys[role] = priv
		if err := r.root.Signed.AddKey(k, role); err != nil {
			r.t.Fatal(err)
		}
	}
	if signedByOld {
		r.writeRoot(old, r.keys["root"])
	} else {
		r.writeRoot(r.keys["root"])
	}
}

// AddTarget stores data as target p with custom facts (not yet published).
func (r *Repo) AddTarget(p string, data []byte, custom any) {
	sum := sha256.Sum256(data)
	r.Write(r.targetFile(p, hex.EncodeToString(sum[:])), data)
	r.setTarget(p, int64(len(data)), sum[:], custom)
}

// AddTargetFile moves the file src into the repository as target p.
func (r *Repo) AddTargetFile(p, src string) {
	f, err := os.Open(src)
	if err != nil {
		r.t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		r.t.Fatal(err)
	}
	sum := h.Sum(nil)
	dst := filepath.Join(r.Dir, filepath.FromSlash(r.targetFile(p, hex.EncodeToString(sum))))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(src, dst); err != nil {
		r.t.Fatal(err)
	}
	r.setTarget(p, n, sum, nil)
}

func (r *Repo) setTarget(p string, n int64, sum []byte, custom any) {
	tf := metadata.TargetFile()
	tf.Path = p
	tf.Length = n
	tf.Hashes = metadata.Hashes{"sha256": sum}
	if custom != nil {
		b, err := json.Marshal(custom)
		if err != nil {
			r.t.Fatal(err)
		}
		raw := json.RawMessage(b)
		tf.Custom = &raw
	}
	r.targets.Signed.Targets[p] = tf
}

// targetFile is the consistent-snapshot file name of target p.
func (r *Repo) targetFile(p, sha string) string {
	return "targets/" + path.Dir(p) + "/" + sha + "." + path.Base(p)
}

// TargetPath is the file on disk serving target p.
func (r *Repo) TargetPath(p string) string {
	tf := r.targets.Signed.Targets[p]
	return filepath.Join(r.Dir, filepath.FromSlash(r.targetFile(p, hex.EncodeToString(tf.Hashes["sha256"]))))
}

// Publish signs new versions of targets, snapshot and timestamp.
func (r *Repo) Publish() {
	r.targets.Signed.Version++
	sign(r.t, r.targets, r.keys["targets"])
	b, err := r.targets.ToBytes(true)
	if err != nil {
		r.t.Fatal(err)
	}
	r.Write(fmt.Sprintf("metadata/%d.targets.json", r.targets.Signed.Version), b)

	r.snapshot.Signed.Version++
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	sign(r.t, r.snapshot, r.keys["snapshot"])
	if b, err = r.snapshot.ToBytes(true); err != nil {
		r.t.Fatal(err)
	}
	r.Write(fmt.Sprintf("metadata/%d.snapshot.json", r.snapshot.Signed.Version), b)

	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.TimestampExpires
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	sign(r.t, r.timestamp, r.keys["timestamp"])
	if b, err = r.timestamp.ToBytes(true); err != nil {
		r.t.Fatal(err)
	}
	r.Write("metadata/timestamp.json", b)
}

// Server serves a directory like `plumb serve`, with an
// ETag (sha256 of the content) on metadata, and counts Requests and wire
// bytes (TLS included) per connection.
type Server struct {
	*httptest.Server
	Chunked  atomic.Bool // serve targets without Content-Length
	Requests atomic.Int64
	Wire     atomic.Int64 // bytes read + written on all connections
	Resumed  atomic.Int64 // requests on a resumed TLS session
	mu       sync.Mutex
	statuses []int
}

// Serve serves dir over HTTPS until the test ends.
func Serve(t testing.TB, dir string) *Server { return serve(t, dir, true) }

// ServePlain serves dir over plain HTTP until the test ends.
func ServePlain(t testing.TB, dir string) *Server { return serve(t, dir, false) }

func serve(t testing.TB, dir string, withTLS bool) *Server {
	s := &Server{}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.Requests.Add(1)
		if req.TLS != nil && req.TLS.DidResume {
			s.Resumed.Add(1)
		}
		rw := &statusWriter{ResponseWriter: w, status: 200}
		defer func() {
			s.mu.Lock()
			s.statuses = append(s.statuses, rw.status)
			s.mu.Unlock()
		}()
		p := filepath.Join(dir, filepath.FromSlash(path.Clean(req.URL.Path)))
		f, err := os.Open(p)
		if err != nil {
			http.NotFound(rw, req)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			http.NotFound(rw, req)
			return
		}
		if path.Ext(p) == ".json" {
			h := sha256.New()
			io.Copy(h, f)
			f.Seek(0, io.SeekStart)
			rw.Header().Set("ETag", strconv.Quote(hex.EncodeToString(h.Sum(nil))[:16]))
		}
		if s.Chunked.Load() && path.Ext(p) != ".json" {
			rw.WriteHeader(http.StatusOK)
			rw.Flush()
			io.Copy(rw, f)
			return
		}
		http.ServeContent(rw, req, "", time.Time{}, f)
	})
	s.Server = httptest.NewUnstartedServer(h)
	s.Listener = &countingListener{Listener: s.Listener, n: &s.Wire}
	if withTLS {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// Reset zeroes the counters.
func (s *Server) Reset() {
	s.Requests.Store(0)
	s.Wire.Store(0)
	s.Resumed.Store(0)
	s.mu.Lock()
	s.statuses = nil
	s.mu.Unlock()
}

// Statuses are the HTTP statuses answered since the last Reset.
func (s *Server) Statuses() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.statuses...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// WritePRNG writes n deterministic pseudo-random bytes (ChaCha8 with a
// zero seed: fast and incompressible) to path.
func WritePRNG(t testing.TB, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := mrand.NewChaCha8([32]byte{})
	buf := make([]byte, 1<<20)
	for n > 0 {
		rng.Read(buf)
		k := min(int64(len(buf)), n)
		if _, err := f.Write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

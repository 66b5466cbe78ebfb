// Package testutil holds helpers shared by the project's tests: building the
// project's own binaries once per test process, locating the package cache,
// requiring host tools with an install hint, and the real servers tests
// start and stop by PID (swtpm, PostgreSQL, nginx, headless Chromium).
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// RepoRoot returns the repository's top directory (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	return repoRoot()
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CacheDir is the package cache shared by tests (PLUMB_CACHE, else the
// repository's .cache, which .gitignore ignores).
func CacheDir(t testing.TB) string { return cacheDir() }

func cacheDir() string {
	if d := os.Getenv("PLUMB_CACHE"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), ".cache")
}

// RequireTool fails the test when a host tool is missing, naming the Debian
// package that provides it; under -short it skips instead.
func RequireTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		msg := fmt.Sprintf("%s not found: run make deps (apt-get install %s)", tool, pkg)
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return p
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Binaries builds plumbd and plumb-init from this repository (static,
// reproducible flags, as make build does: plumbd with cgo and a static
// libzstd, plumb-init pure Go) once per test process and returns their
// paths.
func Binaries(t testing.TB) (plumbd, plumbInit string) {
	t.Helper()
	plumbd, plumbInit, err := BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	return plumbd, plumbInit
}

// BuildBinaries is Binaries for callers without a testing.TB (TestMain,
// sync.Once builders).
func BuildBinaries() (plumbd, plumbInit string, err error) {
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "plumb-test-bin-")
		if binErr != nil {
			return
		}
		binErr = buildPlumbd(binDir)
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binDir+"/", "./cmd/plumb-init")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building plumb-init: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		return "", "", binErr
	}
	return filepath.Join(binDir, "plumbd"), filepath.Join(binDir, "plumb-init"), nil
}

// CleanupBinaries removes what Binaries built; call it from TestMain after
// m.Run.
func CleanupBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// buildPlumbd builds plumbd into dir as make build does: cgo (libzstd
// through DataDog/zstd, so it re-compresses delta blocks exactly as the
// builder does), linked statically.
func buildPlumbd(dir string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "netgo,osusergo",
		"-ldflags", "-s -w -linkmode external -extldflags -static", "-o", dir+"/", "./cmd/plumbd")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building plumbd (cgo, static: needs gcc and glibc's static libraries): %v\n%s", err, out)
	}
	return nil
}

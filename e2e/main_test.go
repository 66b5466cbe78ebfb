package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/internal/testutil"
)

var workDir string // removed after all tests

func TestMain(m *testing.M) {
	var err error
	workDir, err = os.MkdirTemp("", "plumb-e2e-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	testutil.CleanupBinaries()
	os.Exit(code)
}

// demoRecipe is the default recipe, the one make demo builds.
func demoRecipe(t testing.TB) string {
	return filepath.Join(testutil.RepoRoot(t), "recipes", "qemu-x86_64.yaml")
}

// buildRecipe builds a recipe into dir with the repository's own plumbd and
// plumb-init.
func buildRecipe(ctx context.Context, path, dir string) (*builder.Manifest, error) {
	r, err := recipe.Load(path)
	if err != nil {
		return nil, err
	}
	plumbd, plumbInit, err := testutil.BuildBinaries()
	if err != nil {
		return nil, err
	}
	return builder.Build(ctx, r, builder.Options{
		OutDir:   dir,
		CacheDir: testutil.CacheDir(nil),
		Agent:    plumbd,
		Init:     plumbInit,
	})
}

var (
	demoOnce sync.Once
	demoDir  string
	demoMan  *builder.Manifest
	demoErr  error
)

// demoBuild builds the demo recipe once per test process and returns its
// output directory. Tests must not modify the files in it.
func demoBuild(t *testing.T) (string, *builder.Manifest) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a full image: not in -short")
	}
	demoOnce.Do(func() {
		demoDir = filepath.Join(workDir, "demo")
		start := time.Now()
		demoMan, demoErr = buildRecipe(context.Background(), demoRecipe(t), demoDir)
		t.Logf("demo build took %.1fs", time.Since(start).Seconds())
	})
	if demoErr != nil {
		t.Fatalf("building the demo recipe: %v", demoErr)
	}
	return demoDir, demoMan
}

package delta

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"
)

// TestBenchPair round-trips the real benchmark pair (two releases of the
// demo recipe, kernel 6.1.0-55 -> -56) when bench/delta/pair.sh has built
// it in out/bench/delta (PLUMB_DELTA_PAIR overrides the directory). It
// streams: the bundle goes to a file, the applied image into a hash.
func TestBenchPair(t *testing.T) {
	if testing.Short() {
		t.Skip("the bench pair round trip takes tens of seconds")
	}
	dir := os.Getenv("PLUMB_DELTA_PAIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "out", "bench", "delta")
	}
	oldF, err := os.Open(filepath.Join(dir, "v1", "rootfs.sqfs"))
	if err != nil {
		t.Skipf("no bench pair (run bash bench/delta/pair.sh): %v", err)
	}
	defer oldF.Close()
	newF, err := os.Open(filepath.Join(dir, "v2", "rootfs.sqfs"))
	if err != nil {
		t.Skipf("no bench pair (run bash bench/delta/pair.sh): %v", err)
	}
	defer newF.Close()
	oldSt, _ := oldF.Stat()
	newSt, _ := newF.Stat()
	bundle, err := os.Create(filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	defer bundle.Close()
	st, err := Encode(t.Context(), bundle, oldF, newF, oldSt.Size(), newSt.Size(), Options{})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if _, err := bundle.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	ast, err := wire.Apply(t.Context(), h, oldF, oldSt.Size(), bundle)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := sha256.New()
	if _, err := io.Copy(want, io.NewSectionReader(newF, 0, newSt.Size())); err != nil {
		t.Fatal(err)
	}
	if string(h.Sum(nil)) != string(want.Sum(nil)) || ast.TargetBytes != newSt.Size() {
		t.Fatalf("applied image differs from v2 (%d bytes, want %d)", ast.TargetBytes, newSt.Size())
	}
	t.Logf("bundle %d bytes for a %d-byte image: %+v", st.BundleBytes, newSt.Size(), st)
}

package delta

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"
)

// BenchmarkPair round-trips the real benchmark pair (two releases of the
// demo recipe, kernel 6.1.0-55 -> -56) that bench/delta/pair.sh builds in
// out/bench/delta (PLUMB_DELTA_PAIR overrides the directory); make bench
// runs it after building the pair. It streams: the bundle goes to a file,
// the applied image into a hash, which must be v2's. Without the pair it
// fails (it never skips). The tests' own round trips are in delta_test.go;
// e2e TestDeltaUpdateVM applies a real pair on a device.
func BenchmarkPair(b *testing.B) {
	dir := os.Getenv("PLUMB_DELTA_PAIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "out", "bench", "delta")
	}
	oldF, err := os.Open(filepath.Join(dir, "v1", "rootfs.sqfs"))
	if err != nil {
		b.Fatalf("no bench pair (run bash bench/delta/pair.sh): %v", err)
	}
	defer oldF.Close()
	newF, err := os.Open(filepath.Join(dir, "v2", "rootfs.sqfs"))
	if err != nil {
		b.Fatalf("no bench pair (run bash bench/delta/pair.sh): %v", err)
	}
	defer newF.Close()
	for b.Loop() {
		benchPairOnce(b, oldF, newF)
	}
}

func benchPairOnce(b *testing.B, oldF, newF *os.File) {
	oldSt, _ := oldF.Stat()
	newSt, _ := newF.Stat()
	bundle, err := os.Create(filepath.Join(b.TempDir(), "bundle"))
	if err != nil {
		b.Fatal(err)
	}
	defer bundle.Close()
	st, err := Encode(b.Context(), bundle, oldF, newF, oldSt.Size(), newSt.Size(), Options{})
	if err != nil {
		b.Fatalf("Encode: %v", err)
	}
	if _, err := bundle.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	ast, err := wire.Apply(b.Context(), h, oldF, oldSt.Size(), bundle)
	if err != nil {
		b.Fatalf("Apply: %v", err)
	}
	want := sha256.New()
	if _, err := io.Copy(want, io.NewSectionReader(newF, 0, newSt.Size())); err != nil {
		b.Fatal(err)
	}
	if string(h.Sum(nil)) != string(want.Sum(nil)) || ast.TargetBytes != newSt.Size() {
		b.Fatalf("applied image differs from v2 (%d bytes, want %d)", ast.TargetBytes, newSt.Size())
	}
	b.Logf("bundle %d bytes for a %d-byte image: %+v", st.BundleBytes, newSt.Size(), st)
}

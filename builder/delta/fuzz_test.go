package delta

import (
	"bytes"
	"crypto/sha256"
	"runtime/metrics"
	"strings"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/internal/iox"
)

// FuzzApply feeds arbitrary bundles to Apply against a fixed old image:
// it must return a one-line error, or write exactly the header's target
// (size and sha256); it never panics, and the heap it allocates (counted by
// the runtime) stays under MaxMemory.
func FuzzApply(f *testing.F) {
	oldT := baseTree()
	newT := oldT.clone()
	newT["etc/hostname"] = []byte("fuzz\n")
	newT["usr/bin/busybox"] = append(bytes.Clone(oldT["usr/bin/busybox"]), 9)
	// Seeds: real bundles between real images (with units, copies, data).
	f.Add([]byte("PLUMBDLT"))
	f.Add(pseudoText(3, 200))
	seeds := [][2]tree{{oldT, newT}, {oldT, oldT}}
	var imgOld []byte
	for _, s := range seeds {
		o, n := buildF(f, s[0]), buildF(f, s[1])
		imgOld = o
		var b bytes.Buffer
		if _, err := Encode(f.Context(), &b, bytes.NewReader(o), bytes.NewReader(n), int64(len(o)), int64(len(n)), Options{}); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	old := imgOld
	f.Fuzz(func(t *testing.T, bundle []byte) {
		// Every byte the heap hands out while Apply runs (its workers
		// included: Apply returns after they stop) is counted: a sum over
		// the whole call, so it bounds the peak from above. Fuzz inputs run
		// one at a time in a worker process, and the seed run comes after
		// every test of the package, so nothing else allocates meanwhile.
		// Small objects are counted a span at a time: a few KiB of slack.
		before := heapAllocs()
		sum := sha256.New()
		out := &iox.CountingWriter{W: sum}
		st, err := wire.Apply(t.Context(), out, bytes.NewReader(old), int64(len(old)), bytes.NewReader(bundle))
		if a := heapAllocs() - before; a > wire.MaxMemory {
			t.Fatalf("Apply allocated %d bytes, MaxMemory is %d (err %v)", a, wire.MaxMemory, err)
		}
		h, herr := wire.ReadHeader(bytes.NewReader(bundle))
		if err != nil {
			if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		// Success: exactly the target the header promises, nothing more.
		if herr != nil {
			t.Fatalf("Apply succeeded on a bundle whose header does not parse: %v", herr)
		}
		if out.N != h.TargetSize || st.TargetBytes != h.TargetSize {
			t.Fatalf("Apply wrote %d bytes (stats %d), the header's target is %d", out.N, st.TargetBytes, h.TargetSize)
		}
		if got := [32]byte(sum.Sum(nil)); got != h.TargetSHA256 {
			t.Fatalf("Apply succeeded with sha256 %x, the header's target is %x", got, h.TargetSHA256)
		}
	})
}

// heapAllocs is the heap's cumulative allocation count in bytes.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

package delta

import (
	"bytes"
	"io"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"
)

// FuzzApply feeds arbitrary bundles to Apply against a fixed old image:
// it must return an error or the exact target, never panic or allocate
// without bound.
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
		_, _ = wire.Apply(t.Context(), io.Discard, bytes.NewReader(old), int64(len(old)), bytes.NewReader(bundle))
		_, _ = wire.ReadHeader(bytes.NewReader(bundle))
	})
}

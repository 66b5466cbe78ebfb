package diskimg

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
)

// TestWriteDataSealed: with DataSealed the data partition is
// format/datapart's unprovisioned layout: the marker, and the compressed
// filesystem (with the data directories) that fsck.ext4 passes once
// decompressed, sized to the partition less the LUKS2 header room.
func TestWriteDataSealed(t *testing.T) {
	fsckExt4 := tool(t, "fsck.ext4", "e2fsprogs")
	debugfs := tool(t, "debugfs", "e2fsprogs")
	tool(t, "mke2fs", "e2fsprogs")
	spec := testSpec(makeSquashfs(t))
	spec.DataSealed = true
	disk := filepath.Join(t.TempDir(), "disk.img")
	parts, err := Write(t.Context(), disk, spec)
	if err != nil {
		t.Fatal(err)
	}
	part := parts[3]
	if part.Name != disklayout.NameData {
		t.Fatalf("partition 4 is %s", part.Name)
	}
	img, err := os.ReadFile(extract(t, disk, part))
	if err != nil {
		t.Fatal(err)
	}
	m, err := datapart.DecodeMarker(img[:datapart.MarkerSize], part.Size)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != part.Size-datapart.SegmentOffset {
		t.Errorf("filesystem size %d, want %d", m.Size, part.Size-datapart.SegmentOffset)
	}
	comp := img[datapart.ImageOffset : datapart.ImageOffset+m.Compressed]
	if sum := sha256.Sum256(comp); hex.EncodeToString(sum[:]) != m.SHA256 {
		t.Errorf("marker sha256 %s, image %x", m.SHA256, sum)
	}
	zr, err := gzip.NewReader(bytes.NewReader(comp))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != m.Size {
		t.Fatalf("decompressed %d bytes, want %d", len(raw), m.Size)
	}
	fs := filepath.Join(t.TempDir(), "fs.img")
	os.WriteFile(fs, raw, 0o600)
	runTool(t, fsckExt4, "-fn", fs)
	for _, d := range spec.DataDirs {
		runTool(t, debugfs, "-R", "stat "+d, fs)
	}
	t.Logf("%d MiB data partition: the empty filesystem compresses to %d bytes", part.Size>>20, m.Compressed)
}

package builder

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/verity"
)

// TestBuildVerity builds with boot.verity and checks slot A of the disk
// image with veritysetup: the image, its padding and the hash area at the
// manifest's hash offset verify against the manifest's root hash, which is
// on the boot entry's command line.
func TestBuildVerity(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		if testing.Short() {
			t.Skip("veritysetup not installed (apt-get install cryptsetup-bin)")
		}
		t.Fatal("veritysetup not installed: apt-get install cryptsetup-bin (make deps)")
	}
	out := filepath.Join(t.TempDir(), "out")
	m, err := buildIn(t, smallRecipe+"boot: {verity: true}\n", map[string][]byte{"root/big": randomBytes(3 << 20)}, out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verity == nil {
		t.Fatal("manifest has no verity facts")
	}
	p, err := m.Verity.Params("verity")
	if err != nil {
		t.Fatal(err)
	}
	var rootfs Artifact
	for _, a := range m.Artifacts {
		if a.Name == RootfsFile {
			rootfs = a
		}
	}
	if p.DataBlocks != verity.DataBlocksFor(rootfs.Size) || m.Verity.Salt != rootfs.SHA256 {
		t.Errorf("verity %+v for a rootfs of %d bytes with sha256 %s", m.Verity, rootfs.Size, rootfs.SHA256)
	}
	if !strings.Contains(m.Cmdline, p.Cmdline()) {
		t.Errorf("cmdline %q lacks %q", m.Cmdline, p.Cmdline())
	}
	if _, err := os.Stat(filepath.Join(out, VerityFile)); err != nil {
		t.Errorf("output %s: %v", VerityFile, err)
	}

	// Slot A out of the disk image, as the device sees the partition.
	part := m.Partitions[1]
	disk, err := os.Open(filepath.Join(out, DiskFile))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	slotPath := filepath.Join(t.TempDir(), "slot-a")
	sf, err := os.Create(slotPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sf, io.NewSectionReader(disk, part.Start, part.Size)); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	verify := func() error {
		b, err := exec.Command(vs, "verify", slotPath, slotPath, m.Verity.RootHash, fmt.Sprintf("--hash-offset=%d", p.HashOffset)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	if err := verify(); err != nil {
		t.Fatalf("veritysetup verify of slot A: %v", err)
	}
	// One flipped byte in the image's last block is found.
	f, err := os.OpenFile(slotPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x5a}, rootfs.Size-1)
	f.Close()
	if err := verify(); err == nil {
		t.Errorf("veritysetup verify passed a slot with a flipped byte")
	}
}

// TestCheckSizesVerity: a root partition with room for the image but not
// for its tree is refused with the recipe's field.
func TestCheckSizesVerity(t *testing.T) {
	r, err := recipe.Parse("r.yaml", []byte(smallRecipe+"boot: {verity: true}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "rootfs.sqfs")
	size := int64(r.Partitions.Root) - 20<<10 // the tree of 16 MiB takes 36 KiB
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	b := &build{r: r, rootfsPath: img}
	if err := b.checkSizes(nil); err != nil {
		t.Fatalf("without verity: %v", err)
	}
	b.verity = &verity.Params{}
	err = b.checkSizes(nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml: partitions.root: 16MiB is too small for the root filesystem image and its verity hash tree") {
		t.Fatalf("err = %v", err)
	}
}

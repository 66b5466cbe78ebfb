package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/testutil"
)

// TestManifestGolden: manifest.json as writeManifest writes it.
func TestManifestGolden(t *testing.T) {
	h := strings.Repeat("ab", 32)
	m := &Manifest{Name: "edge-demo", Version: "1.2.0-rc.1+build.7", Hardware: "qemu-x86_64", Channel: "stable", Epoch: 1767225600, KernelRelease: "6.1.0-56-cloud-amd64",
		Cmdline:   "root=PARTUUID=x ro plumb.slot=a console=ttyS0",
		Artifacts: []Artifact{{Name: "rootfs.sqfs", Size: 8949760, SHA256: h}, {Name: "disk.img", Size: 1 << 30, SHA256: h}},
		Kernel:    Digest{Size: 7000000, SHA256: h}, Initrd: Digest{Size: 3000000, SHA256: h},
		Partitions: []Partition{{Index: 1, Name: "ESP", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", PartUUID: "11111111-2222-8333-8444-555555555555", Start: 1 << 20, Size: 64 << 20}},
		Measured:   &release.Measured{Bootloader: h, Kernel: h, Initrd: h, PCR15: h, Cmdline: map[string]string{"a": "initrd=\\plumb\\a\\initrd.img root=PARTUUID=x ro plumb.slot=a"}},
	}
	p := filepath.Join(t.TempDir(), "manifest.json")
	if err := writeManifest(p, m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/manifest.golden.json", b)
}

// TestManifestPreviousRelease: plumb publish reads a build the previous
// release made.
func TestManifestPreviousRelease(t *testing.T) {
	m, err := ReadManifest("testdata/prev/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.1.0-rc.2" || m.Measured == nil || len(m.Partitions) != 1 || m.Kernel.Size != 7000000 {
		t.Errorf("ReadManifest(previous release) = %+v", m)
	}
}

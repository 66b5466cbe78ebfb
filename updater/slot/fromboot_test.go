package slot

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/testutil"
)

// TestFromBoot reads a real GPT made by sgdisk; only the sysfs tree that
// announces its partitions is fake (a seam earlyinit owns).
func TestFromBoot(t *testing.T) {
	sgdisk := testutil.RequireTool(t, "sgdisk", "gdisk")
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys/class/block"), filepath.Join(dir, "dev")
	img := filepath.Join(dev, "vda")
	writeFile(t, img, nil)
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), sgdisk,
		"-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:ESP",
		"-n", "2:0:+16M", "-t", "2:8304", "-c", "2:plumb-root-a", "-u", "2:"+uuidA,
		"-n", "3:0:+16M", "-t", "3:8304", "-c", "3:plumb-root-b", "-u", "3:"+uuidB,
		"-n", "4:0:0", "-t", "4:8300", "-c", "4:plumb-data", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, out)
	}
	writeFile(t, filepath.Join(sys, "vda/size"), []byte(fmt.Sprint(64<<20/512)))
	for i := 1; i <= 4; i++ {
		part := fmt.Sprintf("vda%d", i)
		writeFile(t, filepath.Join(sys, "vda", part, "partition"), []byte(fmt.Sprintln(i)))
		writeFile(t, filepath.Join(sys, part, "partition"), []byte(fmt.Sprintln(i)))
		writeFile(t, filepath.Join(dev, part), nil)
	}
	d, err := FromBoot(bootrecord.BootInfo{Slot: "b", RootPARTUUID: uuidB}, DirESP(t.TempDir()), sys, dev, nil)
	if err != nil {
		t.Fatalf("FromBoot: %v", err)
	}
	want := map[string]Partition{"a": {filepath.Join(dev, "vda2"), uuidA}, "b": {filepath.Join(dev, "vda3"), uuidB}}
	if d.Running != "b" || d.Inactive() != "a" || !reflect.DeepEqual(d.Slots, want) {
		t.Errorf("FromBoot = running %q inactive %q slots %v; want b, a, %v", d.Running, d.Inactive(), d.Slots, want)
	}
	if _, err := FromBoot(bootrecord.BootInfo{Slot: "a", RootPARTUUID: uuidB}, DirESP(t.TempDir()), sys, dev, nil); err == nil {
		t.Error("FromBoot with a boot record naming the wrong slot: want an error")
	}
}

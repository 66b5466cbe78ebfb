package install

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/plumb-os/plumb/internal/testutil"
)

// efiString is an efivarfs file holding s: attributes, UTF-16LE, NUL.
func efiString(s string) []byte {
	b := []byte{7, 0, 0, 0}
	for _, c := range append(utf16.Encode([]rune(s)), 0) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return b
}

func TestBootPartUUID(t *testing.T) {
	dir := t.TempDir()
	if got, err := BootPartUUID(dir); got != "" || err != nil {
		t.Errorf("BootPartUUID(no variable) = %q, %v; want none, no error", got, err)
	}
	p := filepath.Join(dir, loaderDevicePartUUID)
	os.WriteFile(p, efiString("8F3C2A10-7B4D-4E21-9A5C-0D1E2F3A4B5C"), 0o644)
	if got, err := BootPartUUID(dir); got != "8f3c2a10-7b4d-4e21-9a5c-0d1e2f3a4b5c" || err != nil {
		t.Errorf("BootPartUUID = %q, %v; want the GUID in lower case", got, err)
	}
	for _, bad := range [][]byte{{7, 0}, {7, 0, 0, 0, 'x'}, efiString("é")} {
		os.WriteFile(p, bad, 0o644)
		if _, err := BootPartUUID(dir); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("BootPartUUID(%x) = %v; want a one-line error", bad, err)
		}
	}
}

// PartUUIDs is checked against GPTs written by sgdisk (gdisk), the real
// partitioning tool, with 512- and 4096-byte sectors.
func TestPartUUIDs(t *testing.T) {
	testutil.RequireTool(t, "sgdisk", "gdisk")
	want := []string{"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "8f3c2a10-7b4d-4e21-9a5c-0d1e2f3a4b5c"}
	img := filepath.Join(t.TempDir(), "disk.img")
	f, _ := os.Create(img)
	f.Truncate(64 << 20)
	f.Close()
	if out, err := exec.Command("sgdisk", "-n", "1:0:+8M", "-u", "1:"+strings.ToUpper(want[0]), "-n", "3:0:+8M", "-u", "3:"+want[1], img).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	got, err := PartUUIDs(img)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("PartUUIDs = %v, %v; want %v", got, err, want)
	}
	if ok, err := holdsPartition(img, want[1]); !ok || err != nil {
		t.Errorf("holdsPartition(%s) = %v, %v; want true", want[1], ok, err)
	}
	if ok, err := holdsPartition(img, "8f3c2a10-7b4d-4e21-9a5c-0d1e2f3a4b5d"); ok || err != nil {
		t.Errorf("holdsPartition(other) = %v, %v; want false", ok, err)
	}

	// The same header and entries on a disk of 4096-byte sectors (sgdisk
	// takes a file's sector size as 512): header at 4096, entries at LBA 2.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	d := newDisks(t)
	big := make([]byte, 8192+128*128)
	copy(big[4096:], b[512:512+92])
	copy(big[8192:], b[1024:1024+128*128])
	d.add("big", 4<<20, big, false)
	if got, err := PartUUIDs(filepath.Join(d.dev, "big")); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("PartUUIDs(4096-byte sectors) = %v, %v; want %v", got, err, want)
	}

	// No GPT: no partitions, no error.
	d.add("zero", 4<<20, nil, false)
	if got, err := PartUUIDs(filepath.Join(d.dev, "zero")); got != nil || err != nil {
		t.Errorf("PartUUIDs(zeros) = %v, %v; want none", got, err)
	}
	// A header with absurd entry counts is one error line, not a huge read.
	h := gptHead()
	binary.LittleEndian.PutUint64(h[512+72:], 2)
	binary.LittleEndian.PutUint32(h[512+80:], 1<<30)
	binary.LittleEndian.PutUint32(h[512+84:], 128)
	d.add("bad", 4<<20, h, false)
	if _, err := PartUUIDs(filepath.Join(d.dev, "bad")); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("PartUUIDs(bad header) = %v; want a one-line error", err)
	}
}

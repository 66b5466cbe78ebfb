package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A sysfs-like directory and disk image files stand in for /sys/class/block
// and /dev: Pick reads only the size files, the partition markers and the
// disks' first MiB, all of which real files give.
type disks struct {
	t             *testing.T
	sysBlock, dev string
}

func newDisks(t *testing.T) *disks {
	d := &disks{t: t, sysBlock: t.TempDir(), dev: t.TempDir()}
	return d
}

// add makes disk name of size bytes; head is written at its start.
func (d *disks) add(name string, size int64, head []byte, partition bool) {
	d.t.Helper()
	dir := filepath.Join(d.sysBlock, name)
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "size"), []byte(itoa(size/512)+"\n"), 0o644)
	if partition {
		os.WriteFile(filepath.Join(dir, "partition"), []byte("1\n"), 0o644)
	}
	f, err := os.Create(filepath.Join(d.dev, name))
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	f.WriteAt(head, 0)
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func gptHead() []byte {
	b := make([]byte, 1024)
	b[510], b[511] = 0x55, 0xAA
	copy(b[512:], "EFI PART")
	return b
}

func ext4Head() []byte {
	b := make([]byte, 2048)
	b[1080], b[1081] = 0x53, 0xEF
	return b
}

func TestPick(t *testing.T) {
	const need = 100 << 20
	cases := []struct {
		name    string
		setup   func(d *disks)
		want    string // disk name, or "" for an error
		wantErr string
	}{
		{"one empty disk", func(d *disks) {
			d.add("vda", 200<<20, nil, false)
		}, "vda", ""},
		{"empty disk beside a used one and a partition", func(d *disks) {
			d.add("sda", 200<<20, gptHead(), false)
			d.add("sda1", 100<<20, nil, true)
			d.add("vdb", 200<<20, nil, false)
		}, "vdb", ""},
		{"loop and ram devices are not disks", func(d *disks) {
			d.add("loop0", 200<<20, nil, false)
			d.add("ram0", 200<<20, nil, false)
			d.add("nvme0n1", 200<<20, nil, false)
		}, "nvme0n1", ""},
		{"only used disks", func(d *disks) {
			d.add("vda", 200<<20, gptHead(), false)
			d.add("vdb", 200<<20, ext4Head(), false)
		}, "", "vda holds a GPT partition table; vdb holds an ext2/3/4 filesystem"},
		{"too small", func(d *disks) {
			d.add("vda", 50<<20, nil, false)
		}, "", "vda: 52428800 bytes, too small"},
		{"two empty disks", func(d *disks) {
			d.add("vda", 200<<20, nil, false)
			d.add("vdb", 200<<20, nil, false)
		}, "", "found 2"},
		{"no disks", func(d *disks) {}, "", "no disks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDisks(t)
			c.setup(d)
			got, err := Pick("auto", d.sysBlock, d.dev, need)
			if c.want != "" {
				if err != nil || got.Path != filepath.Join(d.dev, c.want) || !got.Empty() {
					t.Fatalf("Pick = %+v, %v; want %s, empty", got, err, c.want)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNoDisk) || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Pick = %+v, %v; want one line with %q, class ErrNoDisk", got, err, c.wantErr)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xAA
	data := make([]byte, 8192)
	data[5000] = 1
	cases := []struct {
		name string
		head []byte
		want string
	}{
		{"zeros", nil, ""},
		{"gpt", gptHead(), "a GPT partition table"},
		{"ext4", ext4Head(), "an ext2/3/4 filesystem"},
		{"squashfs", []byte("hsqs"), "a squashfs filesystem"},
		{"mbr", mbr, "an MBR partition table"},
		{"data", data, "data (non-zero bytes in its first MiB)"},
	}
	for _, c := range cases {
		d := newDisks(t)
		d.add("x", 4<<20, c.head, false)
		got, err := Inspect(filepath.Join(d.dev, "x"))
		if err != nil || got.Holds != c.want || got.Size != 4<<20 {
			t.Errorf("Inspect(%s) = %+v, %v; want holds %q", c.name, got, err, c.want)
		}
	}
	// A given disk is inspected, not searched for.
	d := newDisks(t)
	d.add("sdz", 1<<20, gptHead(), false)
	got, err := Pick(filepath.Join(d.dev, "sdz"), "/nonexistent", "/nonexistent", 1)
	if err != nil || got.Empty() {
		t.Errorf("Pick(given) = %+v, %v; want the disk, not empty", got, err)
	}
}

func TestPickMissingDisk(t *testing.T) {
	_, err := Pick(filepath.Join(t.TempDir(), "sdq"), "", "", 1)
	if err == nil || !errors.Is(err, ErrNoDisk) || !strings.HasPrefix(err.Error(), "--disk ") {
		t.Errorf("Pick(missing) = %v, want a one-line --disk error of class ErrNoDisk", err)
	}
}

package earlyinit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/disklayout"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want Cmdline
	}{
		{"", Cmdline{}},
		{"root=PARTUUID=abc ro console=ttyS0 plumb.slot=a\n",
			Cmdline{"root": "PARTUUID=abc", "ro": "", "console": "ttyS0", "plumb.slot": "a"}},
		{`foo="a b  c" "bar=x y" plumb.debug`, Cmdline{"foo": "a b  c", "bar": "x y", "plumb.debug": ""}},
		{"console=tty0 console=ttyS0", Cmdline{"console": "ttyS0"}},
		{"quiet -- single init-arg=1", Cmdline{"quiet": ""}},
		{"  init=/bin/sh\t\tpanic=-1 ", Cmdline{"init": "/bin/sh", "panic": "-1"}},
	}
	for _, tt := range tests {
		if got := ParseCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCmdline(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRootPARTUUID(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"root=PARTUUID=6F1C2A58-0B1D-4E8A-9C1E-2D3F4A5B6C7D", "6f1c2a58-0b1d-4e8a-9c1e-2d3f4a5b6c7d", ""},
		{"ro", "", "got no root= parameter"},
		{"root=/dev/vda2", "", `root: expected PARTUUID=<uuid>, got "/dev/vda2"`},
		{"root=PARTUUID=1234", "", `got "PARTUUID=1234"`},
		{"root=PARTUUID=6f1c2a58-0b1d-4e8a-9c1e-2d3f4a5b6c7g", "", "expected PARTUUID=<uuid>"},
	}
	for _, tt := range tests {
		got, err := ParseCmdline(tt.in).RootPARTUUID()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("RootPARTUUID(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("RootPARTUUID(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSlotOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plumb-root-a", "a"},
		{"plumb-root-b", "b"},
		{"plumb-root-", ""},
		{"plumb-data", ""},
		{"root-a", ""},
	}
	for _, tt := range tests {
		if got := disklayout.SlotOf(tt.in); got != tt.want {
			t.Errorf("disklayout.SlotOf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBootInfoRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run/plumb/boot.json")
	want := bootrecord.BootInfo{Slot: "b", CmdlineSlot: "b", RootPARTUUID: "6f1c2a58-0b1d-4e8a-9c1e-2d3f4a5b6c7d",
		RootDevice: "/dev/vda3", DataDevice: "/dev/vda4", DataMounted: true, InitMillis: 120, UptimeMillis: 2900}
	if err := bootrecord.WriteBootInfo(p, want); err != nil {
		t.Fatal(err)
	}
	got, err := bootrecord.ReadBootInfo(p)
	if err != nil || got != want {
		t.Errorf("ReadBootInfo = %+v, %v, want %+v", got, err, want)
	}
	if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bootrecord.ReadBootInfo(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("ReadBootInfo of bad JSON: error %v, want one naming %s", err, p)
	}
}

const (
	uuidA    = "11111111-2222-4333-8444-555555555555"
	uuidB    = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"
	uuidData = "99999999-8888-4777-8666-555555555555"
)

// fakeBlock lays out a fake /sys/class/block and /dev: disk "vda" is a real
// GPT image made by sgdisk (ESP, plumb-root-a, plumb-root-b, plumb-data),
// "vdb" is a disk without a partition table, "loop0" is empty. Only the
// sysfs tree is fake, a seam we own.
func fakeBlock(t *testing.T, announce []int) blockPaths {
	t.Helper()
	sgdisk, err := exec.LookPath("sgdisk")
	if err != nil {
		msg := "sgdisk not found: apt-get install gdisk"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	dir := t.TempDir()
	bp := blockPaths{sysBlock: filepath.Join(dir, "sys/class/block"), dev: filepath.Join(dir, "dev")}
	mkfile := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(bp.dev, "vda")
	mkfile(img, "")
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), sgdisk,
		"-n", "1:2048:+8M", "-t", "1:ef00", "-c", "1:ESP",
		"-n", "2:0:+16M", "-t", "2:8304", "-c", "2:plumb-root-a", "-u", "2:"+uuidA,
		"-n", "3:0:+16M", "-t", "3:8304", "-c", "3:plumb-root-b", "-u", "3:"+uuidB,
		"-n", "4:0:0", "-t", "4:8300", "-c", "4:plumb-data", "-u", "4:"+uuidData,
		img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v: %s", err, out)
	}
	mkfile(filepath.Join(bp.sysBlock, "vda/size"), fmt.Sprint(64<<20/512))
	mkfile(filepath.Join(bp.sysBlock, "vda/queue/logical_block_size"), "512\n")
	for _, i := range announce {
		part := fmt.Sprintf("vda%d", i)
		mkfile(filepath.Join(bp.sysBlock, "vda", part, "partition"), fmt.Sprintln(i))
		mkfile(filepath.Join(bp.sysBlock, part, "partition"), fmt.Sprintln(i))
		mkfile(filepath.Join(bp.dev, part), "")
	}
	mkfile(filepath.Join(bp.dev, "vdb"), strings.Repeat("\x00", 64<<10))
	mkfile(filepath.Join(bp.sysBlock, "vdb/size"), "128\n")
	mkfile(filepath.Join(bp.sysBlock, "loop0/size"), "0\n")
	return bp
}

func TestFindRoot(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bp := fakeBlock(t, []int{1, 2, 3, 4})
	dev := func(s string) string { return filepath.Join(bp.dev, s) }
	tests := []struct {
		partuuid     string
		wantDev      string
		wantName     string
		wantDataDev  string
		wantNotFound bool
	}{
		{uuidA, dev("vda2"), "plumb-root-a", dev("vda4"), false},
		{strings.ToLower(uuidB), dev("vda3"), "plumb-root-b", dev("vda4"), false},
		{"00000000-0000-4000-8000-000000000000", "", "", "", true},
	}
	for _, tt := range tests {
		root, data, err := findRoot(bp, tt.partuuid, disklayout.NameData, log)
		if tt.wantNotFound {
			if !errors.Is(err, errNotFound) {
				t.Errorf("findRoot(%s) error = %v, want errNotFound", tt.partuuid, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("findRoot(%s): %v", tt.partuuid, err)
			continue
		}
		if root.Device != tt.wantDev || root.Name != tt.wantName || root.PARTUUID != strings.ToLower(tt.partuuid) || root.Disk != "vda" {
			t.Errorf("findRoot(%s) root = %+v, want device %s name %s", tt.partuuid, root, tt.wantDev, tt.wantName)
		}
		if data == nil || data.Device != tt.wantDataDev {
			t.Errorf("findRoot(%s) data = %+v, want device %s", tt.partuuid, data, tt.wantDataDev)
		}
	}
}

// TestFindRootNotYetAnnounced: a partition the kernel has not announced in
// sysfs yet is not found (waitForRoot retries), and a missing data
// partition is not an error.
func TestFindRootNotYetAnnounced(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bp := fakeBlock(t, []int{1, 2})
	if _, _, err := findRoot(bp, uuidB, disklayout.NameData, log); !errors.Is(err, errNotFound) {
		t.Errorf("findRoot(root-b, not announced) error = %v, want errNotFound", err)
	}
	root, data, err := findRoot(bp, uuidA, disklayout.NameData, log)
	if err != nil || root.Name != "plumb-root-a" || data != nil {
		t.Errorf("findRoot(root-a) = %+v, %+v, %v; want plumb-root-a and no data partition", root, data, err)
	}
}

func TestLoadModulesWithoutList(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := loadModules(filepath.Join(t.TempDir(), "load-order"), log); err != nil {
		t.Errorf("loadModules(missing list) = %v, want nil", err)
	}
}

func TestConsolePrefix(t *testing.T) {
	var sb strings.Builder
	log := slog.New(slog.NewTextHandler(&console{w: &sb}, nil))
	log.Info("mounted", "dir", "/dev")
	log.Info("second")
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines %q, want 2", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "plumb-init: ") {
			t.Errorf("line %q lacks the plumb-init: prefix", l)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"root=PARTUUID=x ro", `a="b c" -- d`, `"`, "=", "a==b", "\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCmdline(s)
		if strings.ContainsRune(s, '"') {
			return
		}
		fields := strings.FieldsFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
		for k, v := range c {
			word := k
			if v != "" || strings.Contains(s, k+"=") {
				word = k + "=" + v
			}
			if !slicesContains(fields, word) && !slicesContains(fields, k) {
				t.Errorf("ParseCmdline(%q) has %q=%q, which is no word of the input", s, k, v)
			}
		}
		if _, err := c.RootPARTUUID(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("RootPARTUUID error has several lines: %q", err)
		}
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

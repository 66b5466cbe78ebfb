package slot

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/earlyinit"
)

const (
	uuidA = "11111111-2222-4333-8444-555555555555"
	uuidB = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
)

func TestParseEntryName(t *testing.T) {
	tests := []struct {
		name    string
		want    Entry
		wantErr bool
	}{
		{"plumb-1.0.0.conf", Entry{File: "plumb-1.0.0.conf", ID: "plumb-1.0.0", Version: "1.0.0", Committed: true}, false},
		{"plumb-2.0.0+3.conf", Entry{File: "plumb-2.0.0+3.conf", ID: "plumb-2.0.0", Version: "2.0.0", TriesLeft: 3}, false},
		{"plumb-2.0.0+2-1.conf", Entry{File: "plumb-2.0.0+2-1.conf", ID: "plumb-2.0.0", Version: "2.0.0", TriesLeft: 2, TriesDone: 1}, false},
		{"plumb-2.0.0+0-3.conf", Entry{File: "plumb-2.0.0+0-3.conf", ID: "plumb-2.0.0", Version: "2.0.0", TriesLeft: 0, TriesDone: 3}, false},
		{"plumb-1.2.3-rc1+1-2.conf", Entry{File: "plumb-1.2.3-rc1+1-2.conf", ID: "plumb-1.2.3-rc1", Version: "1.2.3-rc1", TriesLeft: 1, TriesDone: 2}, false},
		{"plumb-1.2.3-rc1.conf", Entry{File: "plumb-1.2.3-rc1.conf", ID: "plumb-1.2.3-rc1", Version: "1.2.3-rc1", Committed: true}, false},
		{"plumb-1.0.0", Entry{}, true},
		{"other.conf", Entry{}, true},
		{"plumb-.conf", Entry{}, true},
		{"plumb-1.0.0+.conf", Entry{}, true},
		{"plumb-1.0.0+x.conf", Entry{}, true},
		{"plumb-1.0.0+1-.conf", Entry{}, true},
		{"plumb-1.0.0+-1.conf", Entry{}, true},
		{"plumb-1.0.0+1-2-3.conf", Entry{}, true},
	}
	for _, tt := range tests {
		got, err := ParseEntryName(tt.name)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseEntryName(%q) error = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseEntryName(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestEntryState(t *testing.T) {
	tests := []struct {
		name                 string
		wantTrial, wantExhst bool
	}{
		{"plumb-1.0.0.conf", false, false},
		{"plumb-1.0.0+3.conf", true, false},
		{"plumb-1.0.0+1-2.conf", true, false},
		{"plumb-1.0.0+0-3.conf", false, true},
	}
	for _, tt := range tests {
		e, err := ParseEntryName(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if e.Trial() != tt.wantTrial || e.Exhausted() != tt.wantExhst {
			t.Errorf("%s: Trial() = %v, Exhausted() = %v; want %v, %v", tt.name, e.Trial(), e.Exhausted(), tt.wantTrial, tt.wantExhst)
		}
	}
}

func TestSameEntry(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"plumb-2.0.0+3.conf", "plumb-2.0.0+2-1.conf", true},
		{"plumb-2.0.0+3.conf", "plumb-2.0.0.conf", true},
		{"plumb-2.0.0.conf", "plumb-2.0.0.conf", true},
		{"plumb-2.0.0+3.conf", "plumb-2.0.1+3.conf", false},
		{"plumb-2.0.0.conf", "plumb-2.0.0-rc1.conf", false},
	}
	for _, tt := range tests {
		if got := SameEntry(tt.a, tt.b); got != tt.want {
			t.Errorf("SameEntry(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func efiString(s string) []byte {
	b := []byte{7, 0, 0, 0} // attributes: NV, BS, RT
	for _, r := range s {
		b = append(b, byte(r), 0)
	}
	return append(b, 0, 0)
}

func TestLoaderEntrySelected(t *testing.T) {
	dir := t.TempDir() // stands in for efivarfs: a seam we own
	if err := os.WriteFile(filepath.Join(dir, loaderEntrySelected), efiString("plumb-2.0.0+3.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoaderEntrySelected(dir)
	if err != nil || got != "plumb-2.0.0+3.conf" {
		t.Errorf("LoaderEntrySelected = %q, %v; want plumb-2.0.0+3.conf", got, err)
	}
	for _, bad := range [][]byte{nil, {7, 0, 0}, {7, 0, 0, 0, 'a'}} {
		if s, err := decodeEFIString(bad); err == nil {
			t.Errorf("decodeEFIString(%v) = %q, want an error", bad, s)
		}
	}
	if s, err := decodeEFIString(efiString("")); err != nil || s != "" {
		t.Errorf("decodeEFIString(empty) = %q, %v; want empty", s, err)
	}
	if _, err := LoaderEntrySelected(t.TempDir()); err == nil {
		t.Error("LoaderEntrySelected(empty dir): want an error")
	}
}

func TestFindSlots(t *testing.T) {
	parts := []earlyinit.Partition{
		{Disk: "vda", Index: 1, Name: "ESP", PARTUUID: "e", Device: "/dev/vda1"},
		{Disk: "vda", Index: 2, Name: "plumb-root-a", PARTUUID: uuidA, Device: "/dev/vda2"},
		{Disk: "vda", Index: 3, Name: "plumb-root-b", PARTUUID: uuidB, Device: "/dev/vda3"},
		{Disk: "vda", Index: 4, Name: "plumb-data", PARTUUID: "d", Device: "/dev/vda4"},
		{Disk: "vdb", Index: 2, Name: "plumb-root-a", PARTUUID: "other", Device: "/dev/vdb2"},
	}
	want := map[string]Partition{"a": {"/dev/vda2", uuidA}, "b": {"/dev/vda3", uuidB}}
	tests := []struct {
		root        string
		wantRunning string
		wantErr     bool
	}{
		{uuidA, "a", false},
		{strings.ToUpper(uuidB), "b", false},
		{"d", "", true},     // the data partition is no slot
		{"other", "", true}, // a disk with one slot
		{"missing", "", true},
	}
	for _, tt := range tests {
		slots, running, err := FindSlots(parts, tt.root)
		if (err != nil) != tt.wantErr {
			t.Errorf("FindSlots(%s) error = %v, want error %v", tt.root, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if running != tt.wantRunning || !reflect.DeepEqual(slots, want) {
			t.Errorf("FindSlots(%s) = %v, %q; want %v, %q", tt.root, slots, running, want, tt.wantRunning)
		}
	}
}

// fixture is a device whose partitions are plain files and whose ESP is a
// temp dir (a seam we own: vfat cannot be mounted on this host), with a
// real squashfs release image made by mksquashfs.
type fixture struct {
	dev            *Device
	esp            string
	image          string // the squashfs file
	kernel, initrd []byte
	facts          *release.Facts
}

func digest(b []byte) release.Digest {
	s := sha256.Sum256(b)
	return release.Digest{SHA256: hex.EncodeToString(s[:]), Size: int64(len(b))}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, running string) *fixture {
	t.Helper()
	mksquashfs := testutil.RequireTool(t, "mksquashfs", "squashfs-tools")
	dir := t.TempDir()
	f := &fixture{esp: filepath.Join(dir, "esp")}
	// A kernel bigger than one squashfs block, an initrd smaller.
	f.kernel = randomBytes(t, 300<<10+17)
	f.initrd = append(bytes.Repeat([]byte("initrd "), 20000), randomBytes(t, 999)...)
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "boot/vmlinuz"), f.kernel)
	writeFile(t, filepath.Join(tree, "boot/initrd.img"), f.initrd)
	writeFile(t, filepath.Join(tree, "etc/plumb/release.json"), []byte(`{"version":"2.0.0"}`))
	f.image = filepath.Join(dir, "rootfs.sqfs")
	out, err := exec.CommandContext(t.Context(), mksquashfs, tree, f.image, "-comp", "zstd", "-noappend", "-all-root", "-quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	img, err := os.ReadFile(f.image)
	if err != nil {
		t.Fatal(err)
	}
	f.facts = &release.Facts{
		Kind: release.KindFull, Name: "demo", Hardware: "qemu-x86_64", Version: "2.0.0", Channel: "stable", Rollout: 100,
		Cmdline: "console=ttyS0 panic=1",
		Rootfs:  digest(img), Kernel: digest(f.kernel), Initrd: digest(f.initrd),
	}
	slots := map[string]Partition{}
	for s, u := range map[string]string{"a": uuidA, "b": uuidB} {
		p := filepath.Join(dir, "root-"+s)
		writeFile(t, p, nil)
		if err := os.Truncate(p, 8<<20); err != nil {
			t.Fatal(err)
		}
		slots[s] = Partition{Device: p, PARTUUID: u}
	}
	f.dev = &Device{ESP: DirESP(f.esp), Slots: slots, Running: running}
	// The running slot's committed entry, as the builder writes it.
	e := bootentry.Entry{Version: "1.0.0", Slot: running, PartUUID: slots[running].PARTUUID, Cmdline: "console=ttyS0"}
	writeFile(t, filepath.Join(f.esp, "loader/entries", e.FileName()), []byte(e.Content()))
	return f
}

// stage writes the release image into the inactive slot the way the agent
// does: OpenInactive, copy, sync, close.
func (f *fixture) stage(t *testing.T) {
	t.Helper()
	img, err := os.Open(f.image)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	st, _ := img.Stat()
	w, err := f.dev.OpenInactive(st.Size())
	if err != nil {
		t.Fatalf("OpenInactive: %v", err)
	}
	if _, err := io.Copy(w, img); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) install(t *testing.T, facts *release.Facts) error {
	t.Helper()
	s := f.dev.Inactive()
	part, err := os.Open(f.dev.Slots[s].Device)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	return f.dev.InstallBoot(t.Context(), part, f.facts.Rootfs.Size, facts, f.dev.Slots[s].PARTUUID)
}

func (f *fixture) entryNames(t *testing.T) []string {
	t.Helper()
	names, err := f.dev.ESP.ReadDir(bootentry.EntriesDir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestInstallBoot(t *testing.T) {
	f := newFixture(t, "a")
	// A leftover entry of slot b from an earlier, failed trial.
	old := bootentry.Entry{Version: "1.5.0", Slot: "b", PartUUID: uuidB}
	writeFile(t, filepath.Join(f.esp, "loader/entries/plumb-1.5.0+0-3.conf"), []byte(old.Content()))
	f.stage(t)
	// The partition is written from its start and not truncated.
	if st, err := os.Stat(f.dev.Slots["b"].Device); err != nil || st.Size() != 8<<20 {
		t.Fatalf("slot b partition after staging: %v, %v; want 8 MiB", st, err)
	}
	if err := f.install(t, f.facts); err != nil {
		t.Fatalf("InstallBoot: %v", err)
	}
	for p, want := range map[string][]byte{"plumb/b/vmlinuz": f.kernel, "plumb/b/initrd.img": f.initrd} {
		got, err := os.ReadFile(filepath.Join(f.esp, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ESP %s: %d bytes, %v; want the image's %d bytes", p, len(got), err, len(want))
		}
	}
	if got, want := f.entryNames(t), []string{"plumb-1.0.0.conf", "plumb-2.0.0+3.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	content, err := os.ReadFile(filepath.Join(f.esp, "loader/entries/plumb-2.0.0+3.conf"))
	want := bootentry.Entry{Version: "2.0.0", Slot: "b", PartUUID: uuidB, Cmdline: "console=ttyS0 panic=1"}.Content()
	if err != nil || string(content) != want {
		t.Errorf("trial entry = %q, %v; want %q", content, err, want)
	}
	entries, err := f.dev.Entries()
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []Entry{
		{File: "plumb-1.0.0.conf", ID: "plumb-1.0.0", Version: "1.0.0", Slot: "a", Committed: true},
		{File: "plumb-2.0.0+3.conf", ID: "plumb-2.0.0", Version: "2.0.0", Slot: "b", TriesLeft: 3},
	}
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Errorf("Entries() = %+v, want %+v", entries, wantEntries)
	}
}

func TestInstallBootDigestMismatch(t *testing.T) {
	tests := []struct {
		name       string
		change     func(*release.Facts)
		wantKernel bool // the kernel was good and is on the ESP
	}{
		{"kernel sha256", func(r *release.Facts) { r.Kernel.SHA256 = strings.Repeat("0", 64) }, false},
		{"kernel size", func(r *release.Facts) { r.Kernel.Size-- }, false},
		{"initrd sha256", func(r *release.Facts) { r.Initrd.SHA256 = strings.Repeat("ab", 32) }, true},
		{"initrd size", func(r *release.Facts) { r.Initrd.Size++ }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "a")
			f.stage(t)
			facts := *f.facts
			tt.change(&facts)
			err := f.install(t, &facts)
			if !errors.Is(err, ErrDigest) {
				t.Fatalf("InstallBoot error = %v, want ErrDigest", err)
			}
			if got, want := f.entryNames(t), []string{"plumb-1.0.0.conf"}; !reflect.DeepEqual(got, want) {
				t.Errorf("entries = %q, want %q (no trial entry)", got, want)
			}
			names, _ := DirESP(f.esp).ReadDir("/plumb/b")
			var want []string
			if tt.wantKernel {
				want = []string{"vmlinuz"}
			}
			if !reflect.DeepEqual(names, want) {
				t.Errorf("ESP /plumb/b = %q, want %q (no partial or temp files)", names, want)
			}
		})
	}
}

func TestInstallBootBadInput(t *testing.T) {
	f := newFixture(t, "a")
	f.stage(t)
	part, err := os.Open(f.dev.Slots["b"].Device)
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close()
	noKernel := *f.facts
	noKernel.Kernel = release.Digest{}
	tests := []struct {
		name     string
		facts    *release.Facts
		partUUID string
		image    io.ReaderAt
	}{
		{"no facts", nil, uuidB, part},
		{"no kernel digest", &noKernel, uuidB, part},
		{"wrong PARTUUID", f.facts, uuidA, part},
		{"no PARTUUID", f.facts, "", part},
		{"not a squashfs", f.facts, uuidB, bytes.NewReader(make([]byte, 1<<20))},
	}
	for _, tt := range tests {
		if err := f.dev.InstallBoot(t.Context(), tt.image, f.facts.Rootfs.Size, tt.facts, tt.partUUID); err == nil {
			t.Errorf("%s: InstallBoot succeeded, want an error", tt.name)
		}
	}
	if got, want := f.entryNames(t), []string{"plumb-1.0.0.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestDryRun(t *testing.T) {
	f := newFixture(t, "b")
	f.dev.DryRun = true
	w, err := f.dev.OpenInactive(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if w.Name() != os.DevNull {
		t.Errorf("OpenInactive in dry run opened %s, want %s", w.Name(), os.DevNull)
	}
	w.Close()
	// Slot a holds the image (written outside the device), so InstallBoot
	// can verify it; in dry run it must change nothing on the ESP.
	img, _ := os.ReadFile(f.image)
	writeFile(t, f.dev.Slots["a"].Device, img)
	if err := f.install(t, f.facts); err != nil {
		t.Fatalf("InstallBoot in dry run: %v", err)
	}
	if got, want := f.entryNames(t), []string{"plumb-1.0.0.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(f.esp, "plumb/a")); !os.IsNotExist(err) {
		t.Errorf("dry run wrote boot files: %v", err)
	}
	if err := f.dev.Reboot(); err != nil {
		t.Errorf("Reboot in dry run: %v", err)
	}
}

func TestOpenInactiveRefuses(t *testing.T) {
	f := newFixture(t, "a")
	same := &Device{ESP: f.dev.ESP, Running: "a", Slots: map[string]Partition{
		"a": f.dev.Slots["a"], "b": {Device: f.dev.Slots["a"].Device, PARTUUID: uuidB},
	}}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(f.dev.Slots["a"].Device, link); err != nil {
		t.Fatal(err)
	}
	alias := &Device{ESP: f.dev.ESP, Running: "a", Slots: map[string]Partition{"a": f.dev.Slots["a"], "b": {Device: link, PARTUUID: uuidB}}}
	sameUUID := &Device{ESP: f.dev.ESP, Running: "a", Slots: map[string]Partition{"a": f.dev.Slots["a"], "b": {Device: f.dev.Slots["b"].Device, PARTUUID: uuidA}}}
	unknown := &Device{ESP: f.dev.ESP, Running: "c", Slots: f.dev.Slots}
	none := &Device{ESP: f.dev.ESP, Running: "", Slots: f.dev.Slots}
	tests := []struct {
		name    string
		dev     *Device
		size    int64
		wantRun bool // ErrRunningSlot
	}{
		{"same device", same, 1 << 20, true},
		{"symlink to the running slot", alias, 1 << 20, true},
		{"same PARTUUID", sameUUID, 1 << 20, true},
		{"unknown running slot", unknown, 1 << 20, true},
		{"no running slot", none, 1 << 20, true},
		{"image too big", f.dev, 8<<20 + 1, false},
		{"no size", f.dev, 0, false},
	}
	for _, tt := range tests {
		w, err := tt.dev.OpenInactive(tt.size)
		if err == nil {
			w.Close()
			t.Errorf("%s: OpenInactive succeeded, want an error", tt.name)
			continue
		}
		if errors.Is(err, ErrRunningSlot) != tt.wantRun {
			t.Errorf("%s: OpenInactive error = %v, want ErrRunningSlot %v", tt.name, err, tt.wantRun)
		}
	}
	w, err := f.dev.OpenInactive(8 << 20)
	if err != nil {
		t.Fatalf("OpenInactive(exact fit): %v", err)
	}
	if got := w.Name(); got != f.dev.Slots["b"].Device {
		t.Errorf("OpenInactive opened %s, want slot b %s", got, f.dev.Slots["b"].Device)
	}
	w.Close()
}

func TestCommitAndDiscard(t *testing.T) {
	f := newFixture(t, "a")
	f.stage(t)
	if err := f.install(t, f.facts); err != nil {
		t.Fatal(err)
	}
	// Committing from slot a (still running the old release) is refused.
	if err := f.dev.Commit("2.0.0"); err == nil {
		t.Error("Commit(2.0.0) while slot a runs: want an error")
	}
	// systemd-boot tries the entry once and boots slot b.
	dir := filepath.Join(f.esp, "loader/entries")
	if err := os.Rename(filepath.Join(dir, "plumb-2.0.0+3.conf"), filepath.Join(dir, "plumb-2.0.0+2-1.conf")); err != nil {
		t.Fatal(err)
	}
	booted := &Device{ESP: f.dev.ESP, Slots: f.dev.Slots, Running: "b"}
	if err := booted.Commit("9.9.9"); err == nil {
		t.Error("Commit(9.9.9) without an entry: want an error")
	}
	for i := range 2 { // idempotent
		if err := booted.Commit("2.0.0"); err != nil {
			t.Fatalf("Commit #%d: %v", i+1, err)
		}
		if got, want := f.entryNames(t), []string{"plumb-1.0.0.conf", "plumb-2.0.0.conf"}; !reflect.DeepEqual(got, want) {
			t.Errorf("after Commit #%d: entries = %q, want %q", i+1, got, want)
		}
	}
	// Committing the old release, running on slot a, is refused from b.
	if err := booted.Commit("1.0.0"); err == nil {
		t.Error("Commit(1.0.0) of slot a while slot b runs: want an error")
	}
	if err := booted.Discard("b"); !errors.Is(err, ErrRunningSlot) {
		t.Errorf("Discard(running slot b) = %v, want ErrRunningSlot", err)
	}
	if err := booted.Discard("a"); err != nil {
		t.Fatalf("Discard(a): %v", err)
	}
	if got, want := f.entryNames(t), []string{"plumb-2.0.0.conf"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Discard(a): entries = %q, want %q", got, want)
	}
	if err := booted.Discard("a"); err != nil {
		t.Errorf("Discard(a) again: %v", err)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/medium"
	"github.com/plumb-os/plumb/format/disklayout"
	plumbcli "github.com/plumb-os/plumb/internal/cli/plumb"
	"github.com/plumb-os/plumb/testvm"
)

// plumb runs the plumb command line (the code of bin/plumb) and returns
// its stdout; a non-zero exit fails the test.
func (f *fleet) plumb(args ...string) string {
	f.t.Helper()
	var out, errOut bytes.Buffer
	if code := plumbcli.Run(f.ctx, args, &out, &errOut); code != 0 {
		f.t.Fatalf("plumb %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// relabel makes a copy of a build (hard links) whose manifest claims
// another hardware and version: published, it is a release the device
// must refuse before installing it (the image inside is the original's).
func (f *fleet) relabel(build, hardware, version string) string {
	f.t.Helper()
	dst := filepath.Join(f.work, "relabel-"+hardware+"-"+version)
	err := filepath.Walk(build, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(build, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if rel == builder.ManifestFile {
			return nil
		}
		return os.Link(p, filepath.Join(dst, rel))
	})
	if err != nil {
		f.t.Fatal(err)
	}
	var m map[string]any
	data, err := os.ReadFile(filepath.Join(build, builder.ManifestFile))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	m["hardware"], m["version"] = hardware, version
	data, _ = json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dst, builder.ManifestFile), data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return dst
}

// TestOfflineUpdate: a device with no network at all (no NIC) finds four
// USB sticks made by plumb export: release 2.0.0 (first), a 3.0.0 whose
// image was tampered with, the older 1.0.0, and a release made for other
// hardware. It installs 2.0.0 from the first, reboots into it, commits,
// then refuses the other three, each with its reason, and slot a keeps
// 1.0.0's bytes.
func TestOfflineUpdate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-offline")
	v1, v2 := f.build("1.0.0", "", ""), f.build("2.0.0", "", "")
	f.publish(v1)
	f.publish(v2)
	f.publish(f.relabel(v2, "qemu-offline", "3.0.0"))
	f.publish(f.relabel(v2, "qemu-other", "3.0.0"))

	sticks := filepath.Join(f.work, "sticks")
	os.MkdirAll(sticks, 0o755)
	good, older, other := filepath.Join(sticks, "good.img"), filepath.Join(sticks, "older.img"), filepath.Join(sticks, "other.img")
	t.Log(strings.TrimSpace(f.plumb("export", f.repoDir, "--hardware", "qemu-offline", "--version", "2.0.0", "-o", good)))
	f.plumb("export", f.repoDir, "--hardware", "qemu-offline", "--version", "1.0.0", "--fs", "fat", "-o", older)
	f.plumb("export", f.repoDir, "--hardware", "qemu-other", "-o", other)
	// The tampered stick: an export whose image has one byte changed.
	tamperedDir := filepath.Join(f.work, "tampered")
	f.plumb("export", f.repoDir, "--hardware", "qemu-offline", "--version", "3.0.0", "-o", tamperedDir)
	imgs, _ := filepath.Glob(filepath.Join(tamperedDir, "targets", "qemu-offline", "3.0.0", "*.rootfs.sqfs"))
	if len(imgs) != 1 {
		t.Fatalf("tampered export holds %v, want one image", imgs)
	}
	flipByte(t, imgs[0], 1<<20)
	tampered := filepath.Join(sticks, "tampered.img")
	if err := medium.WriteImage(ctx, tamperedDir, tampered, medium.Ext4); err != nil {
		t.Fatal(err)
	}

	d := f.flash(t, v1, "device")
	vm, err := testvm.Start(ctx, d.dir, testvm.WithDisk(d.disk),
		testvm.WithDisk(good), testvm.WithDisk(tampered), testvm.WithDisk(older), testvm.WithDisk(other))
	if err != nil {
		t.Fatal(err)
	}
	d.vm = vm
	t.Cleanup(func() { vm.Close() })
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	start := time.Now()
	d.waitFor(0, `installing from update medium" device=/dev/vdb version=2\.0\.0`)
	d.waitFor(0, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(0, `release committed" version=2\.0\.0`)
	t.Logf("stick found to 2.0.0 committed: %.1fs", time.Since(start).Seconds())
	for _, want := range []string{
		`update medium refused" device=/dev/vdc reason="update medium refused: /dev/vdc: target qemu-offline/3\.0\.0/rootfs\.sqfs: verification failed: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}"`,
		`update medium refused" device=/dev/vdd reason="update medium refused: /dev/vdd: its newest release for qemu-offline is 1\.0\.0, not newer than the running 2\.0\.0"`,
		`update medium refused" device=/dev/vde reason="update medium refused: /dev/vde: made for other hardware: it holds qemu-other 3\.0\.0; this device is qemu-offline on channel stable"`,
	} {
		d.waitFor(0, want)
	}
	vm.Close()

	// Slot a still holds 1.0.0; the ESP has 2.0.0 committed and 1.0.0 as
	// the fallback; the state lists the media and their reasons.
	slotA := extractPartition(t, d.disk, partition(t, d.man, disklayout.NameRootA))
	if prefixSum(t, slotA, fileSize(t, filepath.Join(v1, builder.RootfsFile))) != prefixSum(t, filepath.Join(v1, builder.RootfsFile), -1) {
		t.Errorf("slot a no longer holds 1.0.0's image")
	}
	entries := d.entries()
	if !strings.Contains(entries, "plumb-2.0.0.conf\n") || !strings.Contains(entries, "plumb-1.0.0.conf\n") || strings.Contains(entries, "3.0.0") {
		t.Errorf("ESP entries %q, want 2.0.0 committed and 1.0.0", entries)
	}
	state := readDataReplayed(t, d, "plumb/state.json")
	for _, want := range []string{`"phase": "committed"`, `"source": "medium /dev/vdb"`, `"result": "installing 2.0.0"`, `"device": "/dev/vde"`} {
		if !strings.Contains(state, want) {
			t.Errorf("state.json lacks %s:\n%s", want, state)
		}
	}
}

// readDataReplayed reads a file of the data partition after replaying
// its journal (the VM was killed: the last writes may be only in the
// journal, which debugfs alone does not read).
func readDataReplayed(t *testing.T, d *device, name string) string {
	t.Helper()
	img := extractPartition(t, d.disk, partition(t, d.man, disklayout.NameData))
	if out, err := exec.Command("e2fsck", "-fy", img).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck: %v\n%s", err, out)
		}
	}
	out, err := exec.Command("debugfs", "-R", "cat "+name, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", name, err)
	}
	return string(out)
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func prefixSum(t *testing.T, p string, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	h := sha256.New()
	io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// lockTest runs once per boot from inittab on the policy test's 1.0.0:
// when a release is ready it takes an application lock through the local
// socket (plumbd lock), releases it a few seconds after the agent reports
// waiting for it, and after the rollback prints plumbd status.
const lockTest = `  - path: /etc/inittab
    content: |
      ::sysinit:/etc/init.d/rcS
      ::respawn:/usr/bin/plumbd run
      ::once:/usr/bin/lock-test
      ::ctrlaltdel:/bin/busybox reboot
      ::shutdown:/bin/busybox umount -a -r
  - path: /usr/bin/lock-test
    mode: "0755"
    content: |
      #!/bin/sh
      st() { /usr/bin/plumbd status --compact 2>/dev/null; }
      if [ -e /data/lock-test-done ]; then
        i=0
        until st | grep -q 'rolled back from 2.0.0'; do sleep 2; i=$((i+1)); [ $i -gt 150 ] && exit 0; done
        echo "lock-test: status $(st)"
        exit 0
      fi
      until st | grep -q '"phase":"ready"'; do sleep 2; done
      echo "lock-test: ready: $(st)"
      /usr/bin/plumbd lock take field-test >/dev/null && echo "lock-test: lock taken"
      until st | grep -q '"waiting":"waiting-for-lock"'; do sleep 1; done
      echo "lock-test: agent waits for the lock"
      sleep 4
      touch /data/lock-test-done
      /usr/bin/plumbd lock release field-test >/dev/null && echo "lock-test: lock released"
`

// migrate is 2.0.0's first-boot hook: a data migration that fails.
const migrate = `  - path: /usr/bin/migrate
    mode: "0755"
    content: |
      #!/bin/sh
      echo "migrating /data to schema 7"
      echo "migration 7 failed: disk full" >&2
      exit 1
`

// TestInstallPolicy: a device with install: download-only downloads 2.0.0
// and waits as ready for an approval (plumbd status says so); an
// application takes a lock through the local socket; the operator's
// approval, published in the repository with plumb approve, starts the
// install, which the lock defers until the application releases it; then
// 2.0.0's first-boot hook fails, the device rolls back to 1.0.0, and
// plumbd status names the hook and shows its output.
func TestInstallPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, "qemu-policy")
	policy := "  install: download-only\n  group: site-a\n  lock_max_hold: 10m\n"
	f.files = lockTest
	v1 := f.build("1.0.0", "", policy)
	f.files = migrate
	v2 := f.build("2.0.0", "", policy+"  hooks:\n    first-boot: {run: /usr/bin/migrate, timeout: 1m}\n")
	f.publish(v1)
	d := f.flash(t, v1, "device")
	vm := d.powerOn()
	d.waitFor(0, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	mark := vm.Mark()
	f.publish(v2)
	d.waitFor(mark, `release ready" version=2\.0\.0 waiting=waiting-for-approval reason="downloaded and verified; install: download-only waits for an approval of 2\.0\.0`)
	d.waitFor(mark, `lock-test: ready: \{.*"update":\{"phase":"ready","version":"2\.0\.0".*"waiting":"waiting-for-approval","reason":"downloaded and verified`)
	d.waitFor(mark, `lock-test: lock taken`)
	if strings.Contains(vm.Console(), "rebooting into the new release") {
		t.Fatal("the device installed 2.0.0 before it was approved")
	}
	f.plumb("approve", f.repoDir, "--hardware", "qemu-policy", "--version", "2.0.0", "--group", "site-a")
	d.waitFor(mark, `deferred by application lock" what="install of 2\.0\.0" locks="lock field-test \(pid \d+ uid 0\) held since`)
	d.waitFor(mark, `lock-test: agent waits for the lock`)
	released := d.waitFor(mark, `application lock released" name=field-test`)
	rebooting := d.waitFor(mark, `rebooting into the new release" version=2\.0\.0`)
	con := vm.Console()
	if strings.Index(con, released[0]) > strings.Index(con, rebooting[0]) {
		t.Errorf("the device rebooted before the lock was released")
	}
	d.waitFor(mark, `plumbd \S+ started: .*version=2\.0\.0 slot=b`)
	d.waitFor(mark, `hook failed" stage=first-boot hook=/usr/bin/migrate version=2\.0\.0`)
	d.waitFor(mark, `plumbd \S+ started: .*version=1\.0\.0 slot=a`)
	d.waitFor(mark, `rolled back" from=2\.0\.0 to=1\.0\.0 reason="first-boot hook /usr/bin/migrate failed: exit status 1: output: migrating /data to schema 7 \| migration 7 failed: disk full"`)
	d.waitFor(mark, `lock-test: status \{.*"event":"rolled back from 2\.0\.0: first-boot hook /usr/bin/migrate failed: exit status 1: output: migrating /data to schema 7 \| migration 7 failed: disk full".*"hook":\{"stage":"first-boot","path":"/usr/bin/migrate","version":"2\.0\.0","time":"[^"]+","error":"[^"]+","output":"migrating /data to schema 7\\nmigration 7 failed: disk full\\n"\}`)
	vm.Close()
	if entries := d.entries(); strings.Contains(entries, "2.0.0") {
		t.Errorf("ESP still holds 2.0.0's entry: %q", entries)
	}
}

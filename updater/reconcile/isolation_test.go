package reconcile

// Tests of what a workload can reach, inside real containers (containerd +
// runc from containerdtest): the isolation defaults and options seen by a
// probe program in the container, and the mount-source link attack.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/reconcile/containerdtest"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

// probeImage writes an image archive with busybox and the probe
// (testdata/probe, built static) at /bin/probe, and returns its digest.
func probeImage(t *testing.T, archive string) string {
	t.Helper()
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	probe := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-trimpath", "-o", probe, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	dg, err := ocitest.Write(archive, ocitest.Image{
		Files: append(ocitest.Busybox(bb), ocitest.File{Name: "bin/probe", HostPath: probe}),
		Cmd:   []string{"/bin/probe"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dg
}

// waitExited waits until every named container has run and exited.
func waitExited(t *testing.T, r *Reconciler, names ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := 0
		st := r.Status()
		for _, c := range st.Containers {
			for _, n := range names {
				if c.Name == n && (c.State == StateExited || c.State == StateFailed) {
					done++
				}
			}
		}
		if done == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %+v, want %v exited", st.Containers, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probeOutput reads the "key: value" lines the probe printed in
// container name's log.
func probeOutput(t *testing.T, stateDir, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(stateDir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ": "); ok {
			out[k] = v
		}
	}
	if len(out) == 0 {
		t.Fatalf("container %s printed nothing", name)
	}
	return out
}

// dockerCapsWithoutNetRaw is the capability mask of defaultCaps: Docker's
// 00000000a80425fb without CAP_NET_RAW (bit 13, 0x2000).
const dockerCapsWithoutNetRaw = "00000000a80405fb"

// TestIsolationInContainer runs the probe in three containers: one with
// the defaults, one locked down by the manifest (network none, user
// 1000:1000, read-only rootfs, a read-only mount), one privileged with the
// host's PIDs; and checks from inside each what it can do.
func TestIsolationInContainer(t *testing.T) {
	d := containerdtest.Start(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "probe.tar")
	dg := probeImage(t, archive)
	data, state := filepath.Join(dir, "data", "apps"), filepath.Join(dir, "data", "plumb", "apps")
	r, err := New(t.Context(), Options{Address: d.Address, MountDir: d.MountDir, DataDir: data, StateDir: state, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctr := func(name string) workload.Container {
		return workload.Container{Name: name, Image: "plumb.test/probe@" + dg, Target: "apps/g/probe.tar", Restart: workload.RestartNever}
	}
	plain := ctr("plain")
	plain.Command = []string{"/bin/probe", "/rw/file", "from plain"}
	plain.Mounts = []workload.Mount{{Source: "rw", Target: "/rw"}}
	locked := ctr("locked")
	locked.Command = []string{"/bin/probe", "/ro/file", "from locked"}
	locked.Network, locked.User, locked.ReadOnlyRootfs = workload.NetworkNone, "1000:1000", true
	locked.Mounts = []workload.Mount{{Source: "rw", Target: "/ro", ReadOnly: true}}
	priv := ctr("priv")
	priv.Privileged, priv.HostPID = true, true
	m := &workload.Manifest{Containers: []workload.Container{plain, locked, priv}}
	if err := r.Apply(t.Context(), "g", m, "sum", localTargets{"apps/g/probe.tar": archive}); err != nil {
		t.Fatalf("Apply: %v\n%s", err, d.LogTail())
	}
	waitExited(t, r, "plain", "locked", "priv")

	check := func(name string, want map[string]string) {
		t.Helper()
		got := probeOutput(t, state, name)
		for k, v := range want {
			if !strings.HasPrefix(got[k], v) {
				t.Errorf("%s: %s = %q, want %q", name, k, got[k], v)
			}
		}
		t.Logf("%s: Seccomp %s, NoNewPrivs %s, CapEff %s, CapBnd %s, Uid %s, raw socket %s, rootfs write %s, interfaces %s",
			name, got["Seccomp"], got["NoNewPrivs"], got["CapEff"], got["CapBnd"], got["Uid"], got["raw_socket"], got["rootfs_write"], got["interfaces"])
	}
	check("plain", map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapEff": dockerCapsWithoutNetRaw, "CapPrm": dockerCapsWithoutNetRaw, "CapBnd": dockerCapsWithoutNetRaw,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000",
		"raw_socket":      "operation not permitted",
		"rootfs_write":    "ok",
		"proc_sys_write":  "read-only file system",
		"proc_timer_list": "Dc", // /dev/null bound over it
		"sys_firmware":    "0 entries",
		"keyctl":          "operation not permitted", // refused by the seccomp profile
		"write_arg":       "ok",
		"pid":             "1",
	})
	check("locked", map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1", "Uid": "1000 1000 1000 1000", "Gid": "1000 1000 1000 1000",
		"CapEff": "0000000000000000", "CapBnd": dockerCapsWithoutNetRaw,
		"raw_socket":   "operation not permitted",
		"rootfs_write": "read-only file system",
		"interfaces":   "lo(up)",
		"loopback":     "ok",
		"write_arg":    "read-only file system",
	})
	if got := probeOutput(t, state, "locked")["interfaces"]; got != "lo(up)" {
		t.Errorf("locked: interfaces %q, want only lo (network none)", got)
	}
	if got := probeOutput(t, state, "plain")["interfaces"]; !strings.Contains(got, ",") {
		t.Errorf("plain: interfaces %q, want the host's (network host)", got)
	}
	check("priv", map[string]string{"Seccomp": "0", "NoNewPrivs": "0", "raw_socket": "ok", "proc_sys_write": "ok"})
	if got := probeOutput(t, state, "priv")["CapEff"]; got == dockerCapsWithoutNetRaw || got == "0000000000000000" {
		t.Errorf("priv: CapEff %s, want every capability", got)
	}
	if got := probeOutput(t, state, "priv")["pid"]; got == "1" || got == "" {
		t.Errorf("priv: pid %q, want the host's PID namespace (not 1)", got)
	}
	if b, err := os.ReadFile(filepath.Join(data, "g", "rw", "file")); string(b) != "from plain" {
		t.Errorf("host side of plain's mount: %q, %v; want \"from plain\"", b, err)
	}
}

// TestMountLinkAttack: a container plants links in its mount (x -> /, a
// link to the agent's trusted directory, and a directory holding such a
// link); a second manifest mounts sources through each. The apply is
// refused with one line naming the link, nothing runs, and the host's
// files stay as they were.
func TestMountLinkAttack(t *testing.T) {
	d := containerdtest.Start(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "probe.tar")
	dg := probeImage(t, archive)
	data, trusted := filepath.Join(dir, "data", "apps"), filepath.Join(dir, "data", "plumb")
	state := filepath.Join(trusted, "apps")
	if err := os.MkdirAll(trusted, 0o700); err != nil {
		t.Fatal(err)
	}
	rootJSON := filepath.Join(trusted, "root.json")
	if err := os.WriteFile(rootJSON, []byte("trusted"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Options{Address: d.Address, MountDir: d.MountDir, DataDir: data, StateDir: state, Protected: []string{trusted}, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	src := localTargets{"apps/g/probe.tar": archive}
	img := "plumb.test/probe@" + dg
	planter := workload.Container{Name: "planter", Image: img, Target: "apps/g/probe.tar", Restart: workload.RestartNever,
		Mounts: []workload.Mount{{Source: "shared", Target: "/m"}},
		Command: []string{"/bin/sh", "-c", "/bin/busybox ln -s / /m/x && /bin/busybox ln -s " + trusted + " /m/p && " +
			"/bin/busybox mkdir /m/d && /bin/busybox ln -s " + trusted + " /m/d/inner && /bin/busybox touch /m/planted"}}
	if err := r.Apply(t.Context(), "g", &workload.Manifest{Containers: []workload.Container{planter}}, "1", src); err != nil {
		t.Fatalf("Apply(planter): %v\n%s", err, d.LogTail())
	}
	waitExited(t, r, "planter")
	if fi, err := os.Lstat(filepath.Join(data, "g", "shared", "x")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the planter did not plant x -> /: %v %v", fi, err)
	}

	escaped := filepath.Join(dir, "escaped")
	for _, tt := range []struct {
		source, target string
		write          []string // what the victim writes, through its mount
		link           string   // the refused element
	}{
		{"shared/x", "/host", []string{"/host" + escaped, "pwned through x -> /"}, "shared/x"},
		{"shared/p", "/trusted", []string{"/trusted/root.json", "evil"}, "shared/p"},
		{"shared/d/inner/tuf", "/tuf", []string{"/tuf/timestamp.json", "evil"}, "shared/d/inner"},
	} {
		victim := workload.Container{Name: "victim", Image: img, Target: "apps/g/probe.tar", Restart: workload.RestartNever,
			Mounts:  []workload.Mount{{Source: tt.source, Target: tt.target}},
			Command: append([]string{"/bin/probe"}, tt.write...)}
		err := r.Apply(t.Context(), "g", &workload.Manifest{Containers: []workload.Container{planter, victim}}, "2", src)
		if err == nil {
			waitExited(t, r, "victim") // let the attack run, to show what it did
			t.Errorf("Apply(mount %s) succeeded, want it refused", tt.source)
		} else {
			msg := err.Error()
			want := "container victim: mount source " + filepath.Join(data, "g", tt.link) + " is a symbolic link: refused"
			if !strings.HasPrefix(msg, want) || strings.Contains(msg, "\n") {
				t.Errorf("Apply(mount %s) = %q, want one line starting %q", tt.source, msg, want)
			}
			t.Logf("refused: %s", msg)
		}
		for _, c := range r.Status().Containers {
			if c.Name == "victim" {
				t.Errorf("victim exists after a refused apply: %+v", c)
			}
		}
	}
	if _, err := os.Stat(escaped); err == nil {
		t.Errorf("a container wrote %s on the host through x -> /", escaped)
	}
	if b, _ := os.ReadFile(rootJSON); string(b) != "trusted" {
		t.Errorf("trusted root.json = %q after the attack, want \"trusted\"", b)
	}
	if _, err := os.Stat(filepath.Join(trusted, "tuf")); err == nil {
		t.Errorf("a mount through shared/d/inner created %s", filepath.Join(trusted, "tuf"))
	}
}

// TestMountSwapAfterCheck: the source is swapped for a link after plumbd
// opened and checked it, before runc creates the task; the container
// still gets the directory plumbd checked, not the link's target.
func TestMountSwapAfterCheck(t *testing.T) {
	d := containerdtest.Start(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "probe.tar")
	dg := probeImage(t, archive)
	data, state := filepath.Join(dir, "data", "apps"), filepath.Join(dir, "data", "plumb", "apps")
	outside := filepath.Join(dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Options{Address: d.Address, MountDir: d.MountDir, DataDir: data, StateDir: state, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	work := filepath.Join(data, "g", "work")
	swapped := false
	r.afterResolve = func() {
		if err := os.Rename(work, work+".checked"); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(outside, work); err != nil {
			t.Error(err)
		}
		swapped = true
	}
	c := workload.Container{Name: "w", Image: "plumb.test/probe@" + dg, Target: "apps/g/probe.tar", Restart: workload.RestartNever,
		Mounts: []workload.Mount{{Source: "work", Target: "/w"}}, Command: []string{"/bin/probe", "/w/file", "x"}}
	if err := r.Apply(t.Context(), "g", &workload.Manifest{Containers: []workload.Container{c}}, "1", localTargets{"apps/g/probe.tar": archive}); err != nil {
		t.Fatalf("Apply: %v\n%s", err, d.LogTail())
	}
	waitExited(t, r, "w")
	if !swapped {
		t.Fatal("the swap hook did not run")
	}
	if got := probeOutput(t, state, "w")["write_arg"]; got != "ok" {
		t.Errorf("write in the container: %s, want ok", got)
	}
	if _, err := os.Stat(filepath.Join(outside, "file")); err == nil {
		t.Errorf("the container wrote through the swapped-in link to %s", outside)
	}
	if _, err := os.Stat(filepath.Join(work+".checked", "file")); err != nil {
		t.Errorf("the checked directory did not get the write: %v", err)
	}
	// The stored spec names no descriptor between starts.
	ctr, err := r.client.LoadContainer(r.base, "w")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ctr.Spec(r.base)
	if err != nil {
		t.Fatal(err)
	}
	if i := workloadMount(spec.Mounts, "/w"); i < 0 || !strings.HasPrefix(spec.Mounts[i].Source, unresolvedSource) {
		t.Errorf("stored spec mounts %+v, want /w from %s/…", spec.Mounts, unresolvedSource)
	}
}

// TestProtectedDirs: New (checkProtected) refuses a workloads data directory that overlaps
// what plumbd trusts.
func TestProtectedDirs(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		data      string
		protected []string
		ok        bool
	}{
		{"/data/apps", []string{"/data/plumb", "/etc/plumb/root.json"}, true},
		{"/data", []string{"/data/plumb"}, false},
		{"/data/plumb/apps", []string{"/data/plumb"}, false},
		{"/data/plumb", []string{"/data/plumb"}, false},
		{"/etc", []string{"/etc/plumb/root.json"}, false},
		{dir + "/state/x", nil, false}, // inside StateDir
	} {
		err := checkProtected(Options{DataDir: tt.data, StateDir: filepath.Join(dir, "state"), Protected: tt.protected})
		refused := err != nil && strings.Contains(err.Error(), "which plumbd trusts")
		if refused == tt.ok {
			t.Errorf("New(DataDir %s, Protected %v) = %v, want refused %v", tt.data, tt.protected, err, !tt.ok)
		}
	}
}

// TestOlderDefaultsReplaced: a container made under older isolation
// defaults (an older plumbd: another plumb.defaults label, or none) is
// replaced on the next apply, so an update hardens running workloads.
func TestOlderDefaultsReplaced(t *testing.T) {
	d := containerdtest.Start(t)
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	dir := t.TempDir()
	archive := filepath.Join(dir, "bb.tar")
	dg, err := ocitest.Write(archive, ocitest.Image{Files: ocitest.Busybox(bb), Cmd: []string{"/bin/busybox", "sleep", "100000"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(t.Context(), Options{Address: d.Address, MountDir: d.MountDir, DataDir: filepath.Join(dir, "apps"), StateDir: filepath.Join(dir, "state"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// Exits at once (sleep as PID 1 ignores SIGTERM: removal would wait).
	m := &workload.Manifest{Containers: []workload.Container{{Name: "a", Image: "plumb.test/bb@" + dg, Target: "apps/g/bb.tar",
		Command: []string{"/bin/busybox", "true"}, Restart: workload.RestartNever}}}
	src := localTargets{"apps/g/bb.tar": archive}
	if err := r.Apply(t.Context(), "g", m, "1", src); err != nil {
		t.Fatal(err)
	}
	waitExited(t, r, "a")
	ctr, err := r.client.LoadContainer(r.base, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.SetLabels(r.base, map[string]string{labelDefaults: "1"}); err != nil {
		t.Fatal(err)
	}
	before, _ := ctr.Info(r.base)
	if err := r.Apply(t.Context(), "g", m, "1", src); err != nil {
		t.Fatal(err)
	}
	waitExited(t, r, "a") // the new one: its shim is done with the log
	ctr, err = r.client.LoadContainer(r.base, "a")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := ctr.Info(r.base)
	if !after.CreatedAt.After(before.CreatedAt) || after.Labels[labelDefaults] != defaultsVersion {
		t.Errorf("container after apply: created %v (before %v), defaults %q; want a new one with defaults %q",
			after.CreatedAt, before.CreatedAt, after.Labels[labelDefaults], defaultsVersion)
	}
}

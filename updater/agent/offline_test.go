package agent

// Host tests of updates from media (issue 15): exports made by
// tufrepo.Export from a real signed repository, read by the real local
// fetch client (fetch.NewLocal) with the device's trusted root; the rig's
// seams as in integration_test.go (slots are files, the ESP a directory,
// Reboot counted). Mounting is not exercised here: the media are
// directories (the VM test TestOfflineUpdate mounts real sticks).

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/fetch"
)

var (
	otherOnce  sync.Once
	otherBuild build
	otherErr   error
)

// otherHardware is release 3.0.0 of the host recipe for hardware "other".
func otherHardware(t *testing.T) build {
	t.Helper()
	releases(t) // buildsDir
	otherOnce.Do(func() {
		plumbd, plumbInit, err := testutil.BuildBinaries()
		if err != nil {
			otherErr = err
			return
		}
		src := filepath.Join(buildsDir, "src-other")
		for name, data := range map[string]string{
			"recipe.yaml":       strings.Replace(fmt.Sprintf(hostRecipe, "3.0.0"), "hardware: test", "hardware: other", 1),
			"vmlinuz":           "not a real kernel (other)",
			"root/etc/hostname": "other\n",
		} {
			p := filepath.Join(src, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if otherErr = os.WriteFile(p, []byte(data), 0o644); otherErr != nil {
				return
			}
		}
		r, err := recipe.Load(filepath.Join(src, "recipe.yaml"))
		if err != nil {
			otherErr = err
			return
		}
		out := filepath.Join(buildsDir, "build-other")
		m, err := builder.Build(t.Context(), r, builder.Options{OutDir: out, CacheDir: testutil.CacheDir(t), Agent: plumbd, Init: plumbInit})
		otherBuild, otherErr = build{dir: out, m: m}, err
	})
	if otherErr != nil {
		t.Fatal(otherErr)
	}
	return otherBuild
}

// offline gives the agent the local client, on the rig's metadata dir.
func (r *rig) offline(t *testing.T, a *Agent) {
	root := readFile(t, r.metaPath("1.root.json"))
	a.Offline = func(dir string, ref time.Time) (Repository, error) {
		return fetch.NewLocal(fetch.LocalOptions{Dir: dir, MetadataDir: r.tufDir, TrustedRoot: root, RefTime: ref})
	}
}

// export writes an export of hardware/version to a new directory.
func (r *rig) export(t *testing.T, hw, version string) string {
	t.Helper()
	repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "stick")
	if _, err := repo.Export(t.Context(), dir, tufrepo.ExportOptions{Hardware: hw, Version: version}); err != nil {
		t.Fatalf("export %s %s: %v", hw, version, err)
	}
	return dir
}

// refused checks a refusal: one line matching want, slot b's file as it
// was, no new entry, no reboot, and the medium listed as refused in the
// state.
func (r *rig) refused(t *testing.T, a *Agent, dir string, want string) {
	t.Helper()
	sumB := sumFile(t, r.slots["b"].Device, -1)
	entries := r.entries(t)
	reboots := r.reboots
	installed, err := a.UpdateFrom(t.Context(), dir, "stick")
	if installed || err == nil {
		t.Fatalf("UpdateFrom = %v, %v; want a refusal matching %q", installed, err, want)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !regexp.MustCompile(want).MatchString(msg) {
		t.Errorf("UpdateFrom error = %q, want one line matching %q", msg, want)
	}
	if sumFile(t, r.slots["b"].Device, -1) != sumB {
		t.Errorf("slot b's file changed")
	}
	if got := r.entries(t); !equal(got, entries) {
		t.Errorf("ESP entries = %q, want %q", got, entries)
	}
	if r.reboots != reboots {
		t.Errorf("Reboot called")
	}
	st := r.state(t)
	if m := st.Media[len(st.Media)-1]; !m.Refused || m.Result != err.Error() {
		t.Errorf("state media = %+v, want the refusal %q", m, err)
	}
}

// TestUpdateFromMedium: a device without network refuses a medium with no
// export, one made for other hardware and one whose target was tampered
// with, then installs v2 from a good one, commits it after its trial
// boot, and refuses a medium with the older v1.
func TestUpdateFromMedium(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(t.Context(), otherHardware(t).dir, tufrepo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	a := r.agent(t, "a", v1, nil)
	r.offline(t, a)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}

	r.refused(t, a, t.TempDir(), `^update medium refused: stick: update medium \S+: no Plumb update on it: metadata/timestamp\.json is missing \(expected what plumb export writes: metadata/ and targets/\)$`)
	r.refused(t, a, r.export(t, "other", ""), `^update medium refused: stick: made for other hardware: it holds other 3\.0\.0; this device is test on channel stable$`)
	good := r.export(t, hardware, v2)
	tampered := r.export(t, hardware, v2)
	files, _ := filepath.Glob(filepath.Join(tampered, "targets", hardware, v2, "*.rootfs.sqfs"))
	if len(files) != 1 {
		t.Fatalf("export targets %v, want one image", files)
	}
	b := readFile(t, files[0])
	b[len(b)/3] ^= 0x20
	writeFile(t, files[0], b)
	r.refused(t, a, tampered, `^update medium refused: stick: target test/`+regexp.QuoteMeta(v2)+`/rootfs\.sqfs: verification failed: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}$`)

	// plumbd update --from: a request to the agent. An image file is
	// refused with how to use it; the directory installs.
	img := filepath.Join(t.TempDir(), "stick.img")
	writeFile(t, img, []byte("an image"))
	if err := a.handle(t.Context(), Request{Kind: ReqUpdateFrom, Arg: img}); err == nil || !strings.Contains(err.Error(), "a file, expected a block device or a directory: write the image to a stick, or mount it (mount -o loop,ro") {
		t.Errorf("update --from FILE = %v, want the refusal saying how to use an image", err)
	}
	if err := a.handle(t.Context(), Request{Kind: ReqUpdateFrom, Arg: good}); err != nil {
		t.Fatalf("update --from %s: %v", good, err)
	}
	if st := r.state(t); st.Phase != PhaseRebooting || st.Version != v2 || st.Source != "medium "+good || st.Media[len(st.Media)-1].Result != "installed "+v2 {
		t.Errorf("state = phase %s version %s source %q media %+v; want rebooting into "+v2+" from the medium", st.Phase, st.Version, st.Source, st.Media)
	}
	bootTrial(t, r, "plumb-"+strings.ReplaceAll(v2, "+", "_")+"+2-1.conf")
	b2 := r.agent(t, "b", v2, nil)
	r.offline(t, b2)
	if err := b2.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != PhaseCommitted {
		t.Fatalf("after the trial boot: phase %s, want committed", st.Phase)
	}
	r.sumA = sumFile(t, r.slots["a"].Device, -1)
	r.refused(t, b2, r.export(t, hardware, v1), `^update medium refused: stick: its newest release for test is 1\.0\.0, not newer than the running `+regexp.QuoteMeta(v2)+`$`)
	if sumFile(t, r.slots["a"].Device, -1) != r.sumA {
		t.Errorf("slot a (the fallback) changed")
	}
}

// TestMediumExpiryRule: metadata that has expired by the wall clock is
// accepted from a medium when it was still valid the last time the device
// verified the repository online (docs/offline.md), and refused when it
// had expired before then.
func TestMediumExpiryRule(t *testing.T) {
	signed := time.Now().Add(-30 * 24 * time.Hour) // a month-old export: every role but root has expired
	r := newRig(t, tufrepo.Options{Now: func() time.Time { return signed }})
	r.publish(t, v2)
	stick := r.export(t, hardware, v2)

	a := r.agent(t, "a", v1, nil)
	r.offline(t, a)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.State().LastOnline = time.Now().Add(-time.Hour) // online after the export had expired
	r.refused(t, a, stick, `^update medium refused: stick: metadata: timestamp\.json: repository metadata expired at \S+$`)

	a.State().LastOnline = signed.Add(-24 * time.Hour) // offline since before the export was made
	if installed, err := a.UpdateFrom(t.Context(), stick, "stick"); err != nil || !installed {
		t.Fatalf("UpdateFrom = %v, %v; want installed", installed, err)
	}
}

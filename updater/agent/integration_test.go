package agent

// Host-level acceptance tests of the update (issue 3): two real releases
// built with builder.Build, a real TUF repository (tufrepo) served over
// HTTPS by plumb serve's server (or nginx), the real fetch client, slot
// device and agent. Only two seams are ours and replaced: the slots' block
// devices are plain 64 MiB files, the ESP is a directory (slot.DirESP), and
// Agent.Reboot records the call instead of rebooting.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/servetest"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/slot"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildsDir != "" {
		os.RemoveAll(buildsDir)
	}
	testutil.CleanupBinaries()
	os.Exit(code)
}

// hostRecipe builds offline in seconds: a stand-in kernel file (never
// booted), no modules, a directory source.
const hostRecipe = `name: small
version: %s
hardware: test
epoch: 1767225600
kernel:
  file: ./vmlinuz
  modules: []
rootfs:
  - dir: ./root
partitions:
  esp: 33MiB
  root: 16MiB
  data: 32MiB
boot: {verity: true}
`

const (
	hardware = "test"
	channel  = "stable" // the recipe's default
	slotSize = 64 << 20
	// v2 is a pre-release with build metadata (issue 13): every version a
	// recipe accepts must build, publish, install and boot.
	v1, v2    = "1.0.0", "1.2.0-rc.1+build.7"
	v2Trial   = "plumb-1.2.0-rc.1_build.7+3.conf" // "+" is written "_" in a name
	v2ID      = "plumb-1.2.0-rc.1_build.7"
	v2Target  = hardware + "/" + v2 + "/rootfs.sqfs"
	stateFile = "state.json"
)

// build is one built release: plumb build's output directory.
type build struct {
	dir string
	m   *builder.Manifest
}

func (b build) file(name string) string { return filepath.Join(b.dir, name) }

func (b build) partUUID(t *testing.T, name string) string {
	t.Helper()
	for _, p := range b.m.Partitions {
		if p.Name == name {
			return strings.ToLower(p.PartUUID)
		}
	}
	t.Fatalf("manifest of %s has no partition %s", b.m.Version, name)
	return ""
}

// The two releases are built once per test process (they do not change).
var (
	buildsOnce sync.Once
	buildsDir  string
	builds     map[string]build
	buildsErr  error
)

func releases(t *testing.T) map[string]build {
	t.Helper()
	buildsOnce.Do(func() {
		buildsDir, buildsErr = os.MkdirTemp("", "plumb-agent-test-")
		if buildsErr != nil {
			return
		}
		plumbd, plumbInit, err := testutil.BuildBinaries()
		if err != nil {
			buildsErr = err
			return
		}
		builds = map[string]build{}
		for _, v := range []string{v1, v2} {
			src := filepath.Join(buildsDir, "src-"+v)
			for name, data := range map[string]string{
				"recipe.yaml":       fmt.Sprintf(hostRecipe, v),
				"vmlinuz":           "not a real kernel " + v,
				"root/etc/hostname": "small\n",
			} {
				p := filepath.Join(src, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					buildsErr = err
					return
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					buildsErr = err
					return
				}
			}
			r, err := recipe.Load(filepath.Join(src, "recipe.yaml"))
			if err != nil {
				buildsErr = err
				return
			}
			out := filepath.Join(buildsDir, "build-"+v)
			m, err := builder.Build(t.Context(), r, builder.Options{
				OutDir: out, CacheDir: testutil.CacheDir(t), Agent: plumbd, Init: plumbInit})
			if err != nil {
				buildsErr = fmt.Errorf("building %s: %w", v, err)
				return
			}
			builds[v] = build{dir: out, m: m}
		}
	})
	if buildsErr != nil {
		t.Fatal(buildsErr)
	}
	return builds
}

// rig is one device and its repository: the repository directory served
// over HTTPS, the device's slots (files), ESP (a directory) and data
// directory (TUF metadata, agent state).
type rig struct {
	rel      map[string]build
	repoDir  string
	url      string // repository base URL
	certDir  string
	hc       *http.Client
	tufDir   string
	dataDir  string
	espDir   string
	slots    map[disklayout.Slot]slot.Partition
	sumA     [sha256.Size]byte // slot a's file before the test
	reboots  int
	repoOpts tufrepo.Options
	srv      *server.Server
	link     fetch.Link // the device's link options
}

// newRig makes a repository with opts (its clock and expiries), publishes
// v1, serves it with plumb serve's server on 127.0.0.1, and makes a device
// running v1 from slot a with a committed entry plumb-1.0.0.conf.
func newRig(t *testing.T, opts tufrepo.Options) *rig {
	t.Helper()
	r := &rig{rel: releases(t), repoOpts: opts}
	work := t.TempDir()
	r.repoDir = filepath.Join(work, "repo")
	if err := tufrepo.Init(t.Context(), r.repoDir, opts); err != nil {
		t.Fatal(err)
	}
	r.publish(t, v1)

	r.certDir = filepath.Join(work, "tls")
	srv := servetest.Start(t, server.Options{Dir: r.repoDir, CertDir: r.certDir}, "")
	r.srv = srv.Server
	r.url = "https://" + srv.Addr
	pool := srv.CAs
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	r.hc = &http.Client{Transport: tr, Timeout: time.Minute}

	// The device. Block devices are replaced by plain files (the seam is
	// ours): slot a holds v1's rootfs.sqfs, slot b is empty.
	r.tufDir = filepath.Join(work, "data", "tuf")
	r.dataDir = filepath.Join(work, "data")
	r.espDir = filepath.Join(work, "esp")
	b1 := r.rel[v1]
	r.slots = map[disklayout.Slot]slot.Partition{
		"a": {Device: filepath.Join(work, "slot-a"), PARTUUID: b1.partUUID(t, disklayout.NameRootA)},
		"b": {Device: filepath.Join(work, "slot-b"), PARTUUID: b1.partUUID(t, disklayout.NameRootB)},
	}
	copyFile(t, b1.file(builder.RootfsFile), r.slots[disklayout.A].Device)
	writeFile(t, r.slots[disklayout.B].Device, nil)
	for _, s := range disklayout.Slots {
		if err := os.Truncate(r.slots[s].Device, slotSize); err != nil {
			t.Fatal(err)
		}
	}
	r.sumA = sumFile(t, r.slots[disklayout.A].Device, -1)

	// The ESP as the build left it for slot a.
	e := bootentry.Entry{Version: v1, Slot: disklayout.A, PartUUID: r.slots[disklayout.A].PARTUUID}
	writeFile(t, filepath.Join(r.espDir, "loader", "entries", e.Name()), []byte(e.Content()))
	copyFile(t, b1.file(builder.KernelFile), filepath.Join(r.espDir, bootentry.SlotKernel("a")))
	copyFile(t, b1.file(builder.InitrdFile), filepath.Join(r.espDir, bootentry.SlotInitrd("a")))
	return r
}

// publish adds release v to the repository with the rig's clock.
func (r *rig) publish(t *testing.T, v string) {
	t.Helper()
	repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(t.Context(), r.rel[v].dir, tufrepo.PublishOptions{}); err != nil {
		t.Fatalf("publishing %s: %v", v, err)
	}
}

func (r *rig) metaPath(name string) string {
	return filepath.Join(r.repoDir, "repository", "metadata", name)
}

// targetFile is the file serving target <hardware>/<v>/rootfs.sqfs.
func (r *rig) targetFile(t *testing.T, v string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(r.repoDir, "repository", "targets", hardware, v, "*.rootfs.sqfs"))
	if err != nil || len(m) != 1 {
		t.Fatalf("target files of %s: %v (err %v), want one", v, m, err)
	}
	return m[0]
}

// agent is plumbd as it starts after a boot of slot running with release
// version: a new fetch client on the persistent metadata directory, the
// device, the configuration.
func (r *rig) agent(t *testing.T, running disklayout.Slot, version string, health []config.HealthCheck) *Agent {
	t.Helper()
	root, err := os.ReadFile(r.metaPath("1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := fetch.New(fetch.Options{Repo: r.url, MetadataDir: r.tufDir, TrustedRoot: root, HTTPClient: r.hc, Link: r.link})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Repository: r.url, Root: config.RootPath, Hardware: hardware, Channel: channel,
		Poll: config.Duration(time.Second), Commit: "health", Health: health,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &Agent{
		Config: cfg,
		Facts: device.Facts{
			Release: release.ImageInfo{Name: "small", Version: version, Hardware: hardware, Channel: channel},
			Slot:    running,
			Boot:    &bootrecord.BootInfo{Slot: running, RootPARTUUID: r.slots[running].PARTUUID, DataMounted: true},
		},
		Repo:      c,
		Device:    &slot.Device{ESP: slot.DirESP(r.espDir), Slots: r.slots, Running: running},
		StatePath: filepath.Join(r.dataDir, stateFile),
		DeviceID:  "host-test-device",
		Reboot:    func() error { r.reboots++; return nil },
	}
}

// entries lists the ESP's boot entry files.
func (r *rig) entries(t *testing.T) []string {
	t.Helper()
	names, err := slot.DirESP(r.espDir).ReadDir(bootentry.EntriesDir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func (r *rig) state(t *testing.T) *State {
	t.Helper()
	st, err := LoadState(filepath.Join(r.dataDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// untouched checks what every refused update must leave: an error of one
// line naming the problem, no trial entry and no boot files for slot b,
// slot a's bytes, no reboot, and a state that is not on its way to a
// reboot.
func (r *rig) untouched(t *testing.T, err error, want *regexp.Regexp) {
	t.Helper()
	if err == nil {
		t.Fatalf("Poll succeeded, want an error matching %q", want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("Poll error has %d lines, want one: %q", strings.Count(msg, "\n")+1, msg)
	}
	if !want.MatchString(msg) {
		t.Errorf("Poll error = %q, want it to match %q", msg, want)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
	for _, f := range []string{bootentry.SlotKernel("b"), bootentry.SlotInitrd("b")} {
		if _, err := os.Stat(filepath.Join(r.espDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ESP %s exists (stat err %v), want none", f, err)
		}
	}
	if sumFile(t, r.slots[disklayout.A].Device, -1) != r.sumA {
		t.Errorf("slot a's file changed")
	}
	if r.reboots != 0 {
		t.Errorf("Reboot called %d times, want 0", r.reboots)
	}
	st := r.state(t)
	if st.Phase == PhaseRebooting || st.Phase == PhaseEntry {
		t.Errorf("state phase %q, want neither rebooting nor entry", st.Phase)
	}
	if st.LastResult != msg {
		t.Errorf("state last_result %q, want the error %q", st.LastResult, msg)
	}
}

// TestRefusedUpdates: v2 is published, and what the server serves is
// changed; the device must refuse it and keep running v1 from slot a.
func TestRefusedUpdates(t *testing.T) {
	qv2 := regexp.QuoteMeta(v2)
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	tests := []struct {
		name string
		opts tufrepo.Options
		// attack runs after v1's agent settled; it publishes v2 and
		// changes the served repository.
		attack func(t *testing.T, r *rig, a *Agent)
		want   string // regexp of the Poll error
	}{
		{
			name: "target tampered, same length",
			attack: func(t *testing.T, r *rig, a *Agent) {
				r.publish(t, v2)
				p := r.targetFile(t, v2)
				b := readFile(t, p)
				b[len(b)/2] ^= 0x55
				writeFile(t, p, b)
			},
			want: `^installing ` + qv2 + ` into slot b: target test/` + qv2 + `/rootfs\.sqfs: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}$`,
		},
		{
			name: "target longer than recorded",
			attack: func(t *testing.T, r *rig, a *Agent) {
				r.publish(t, v2)
				p := r.targetFile(t, v2)
				writeFile(t, p, append(readFile(t, p), "appended"...))
			},
			want: `^installing ` + qv2 + ` into slot b: target test/` + qv2 + `/rootfs\.sqfs: server sends \d+ bytes, trusted length is \d+$`,
		},
		{
			name:   "expired timestamp",
			opts:   tufrepo.Options{Now: past},
			attack: func(t *testing.T, r *rig, a *Agent) { r.publish(t, v2) },
			want:   `^timestamp\.json: repository metadata expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`,
		},
		{
			name: "timestamp signature broken",
			attack: func(t *testing.T, r *rig, a *Agent) {
				r.publish(t, v2)
				breakSignature(t, r.metaPath("timestamp.json"))
			},
			want: `^timestamp\.json: signature threshold not met \(0 of 1 required signatures valid\)$`,
		},
		{
			name: "snapshot signature broken",
			attack: func(t *testing.T, r *rig, a *Agent) {
				r.publish(t, v2)
				ts, err := metadata.Timestamp().FromFile(r.metaPath("timestamp.json"))
				if err != nil {
					t.Fatal(err)
				}
				breakSignature(t, r.metaPath(fmt.Sprintf("%d.snapshot.json", ts.Signed.Meta["snapshot.json"].Version)))
			},
			want: `^\d+\.snapshot\.json: signature threshold not met \(0 of 1 required signatures valid\)$`,
		},
		{
			name: "rollback to an older timestamp",
			attack: func(t *testing.T, r *rig, a *Agent) {
				// The device sees timestamp N (after a re-sign), the
				// server then serves N-1 again, v2 being published.
				old := readFile(t, r.metaPath("timestamp.json"))
				repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
				if err != nil {
					t.Fatal(err)
				}
				if err := repo.Refresh(t.Context()); err != nil {
					t.Fatal(err)
				}
				if installed, err := a.Poll(t.Context()); installed || err != nil {
					t.Fatalf("Poll with only v1 published = %v, %v; want no update", installed, err)
				}
				r.publish(t, v2)
				writeFile(t, r.metaPath("timestamp.json"), old)
			},
			want: `^rollback: timestamp version 2 < trusted 3$`,
		},
		{
			name: "new root not signed by the old root",
			attack: func(t *testing.T, r *rig, a *Agent) {
				r.publish(t, v2)
				forgeRoot(t, r.metaPath("1.root.json"), r.metaPath("2.root.json"))
			},
			want: `^2\.root\.json: signature threshold not met \(0 of 1 required signatures valid\)$`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.opts)
			a := r.agent(t, disklayout.A, v1, nil)
			if err := a.Settle(t.Context()); err != nil {
				t.Fatalf("Settle: %v", err)
			}
			tt.attack(t, r, a)
			installed, err := a.Poll(t.Context())
			if installed {
				t.Errorf("Poll installed an update")
			}
			r.untouched(t, err, regexp.MustCompile(tt.want))
			// The trusted root stays version 1.
			if root, err := metadata.Root().FromFile(filepath.Join(r.tufDir, "root.json")); err != nil || root.Signed.Version != 1 {
				t.Errorf("trusted root: %v (err %v), want version 1", root, err)
			}
		})
	}
}

// installV2 publishes v2 and runs the poll that installs it into slot b,
// checking everything the install leaves behind.
// verityFile opens a slot file for verity.Check.
func verityFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func installV2(t *testing.T, r *rig, a *Agent) {
	t.Helper()
	installed, err := a.Poll(t.Context())
	if err != nil || !installed {
		t.Fatalf("Poll = %v, %v; want v2 installed", installed, err)
	}
	// Slot b starts with v2's image, slot a is untouched.
	img := r.rel[v2].file(builder.RootfsFile)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if sumFile(t, r.slots[disklayout.B].Device, fi.Size()) != sumFile(t, img, -1) {
		t.Errorf("slot b's first %d bytes differ from v2's rootfs.sqfs", fi.Size())
	}
	if sumFile(t, r.slots[disklayout.A].Device, -1) != r.sumA {
		t.Errorf("slot a's file changed")
	}
	for f, src := range map[string]string{
		bootentry.SlotKernel("b"): r.rel[v2].file(builder.KernelFile),
		bootentry.SlotInitrd("b"): r.rel[v2].file(builder.InitrdFile),
	} {
		if !bytes.Equal(readFile(t, filepath.Join(r.espDir, f)), readFile(t, src)) {
			t.Errorf("ESP %s differs from v2's %s", f, filepath.Base(src))
		}
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf", v2Trial}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
	entry := string(readFile(t, filepath.Join(r.espDir, "loader", "entries", v2Trial)))
	// The verity tree was written after the image before the trial entry
	// (format/verity), and the entry boots with v2's root hash.
	vp, err := r.rel[v2].m.Verity.Params("verity")
	if err != nil {
		t.Fatal(err)
	}
	if err := verity.Check(verityFile(t, r.slots[disklayout.B].Device), vp); err != nil {
		t.Errorf("slot b's verity tree: %v", err)
	}
	for _, want := range []string{"linux /plumb/b/vmlinuz\n", "root=PARTUUID=" + r.slots[disklayout.B].PARTUUID, "plumb.slot=b", "sort-key plumb\n", "version 1.2.0~rc.1\n", "title Plumb 1.2.0-rc.1+build.7 (slot b)\n", vp.Cmdline()} {
		if !strings.Contains(entry, want) {
			t.Errorf("trial entry lacks %q:\n%s", want, entry)
		}
	}
	if r.reboots != 1 {
		t.Errorf("Reboot called %d times, want 1", r.reboots)
	}
	if st := r.state(t); st.Phase != PhaseRebooting || st.Version != v2 || st.Slot != "b" {
		t.Errorf("state = %+v, want phase rebooting to %s in slot b", st, v2)
	}
}

// bootTrial is what systemd-boot does to a trial entry it boots: count one
// try in the file name.
func bootTrial(t *testing.T, r *rig, to string) {
	t.Helper()
	d := filepath.Join(r.espDir, "loader", "entries")
	if err := os.Rename(filepath.Join(d, v2Trial), filepath.Join(d, to)); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateOnHost: the happy path: v2 goes into slot b on trial, the
// device reboots, the trial boot passes its checks and commits.
func TestUpdateOnHost(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if installed, err := a.Poll(t.Context()); installed || err != nil || a.State().LastResult != "no update" {
		t.Fatalf("Poll with only v1 published = %v, %v (%q); want no update", installed, err, a.State().LastResult)
	}
	r.publish(t, v2)
	installV2(t, r, a)

	// The reboot: systemd-boot boots the trial and counts a try.
	bootTrial(t, r, v2ID+"+2-1.conf")
	b := r.agent(t, disklayout.B, v2, nil)
	if err := b.Settle(t.Context()); err != nil {
		t.Fatalf("Settle after the trial boot: %v", err)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf", v2ID + ".conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
	if st := r.state(t); st.Phase != PhaseCommitted || st.Event != "committed "+v2 {
		t.Errorf("state = %+v, want committed %s", st, v2)
	}
	if r.reboots != 1 {
		t.Errorf("Reboot called %d times, want 1", r.reboots)
	}
	// Nothing newer: the committed device stays.
	if installed, err := b.Poll(t.Context()); installed || err != nil {
		t.Errorf("Poll on v2 = %v, %v; want no update", installed, err)
	}
	// The commit is in the rollback record, apart from state.json.
	if got, err := b.Repo.RecordedRelease(); err != nil || got != v2 {
		t.Errorf("recorded release = %q, %v; want %s", got, err, v2)
	}
}

// TestExpiryNeverBricks: a repository nobody re-signed leaves the device
// on its running slot, saying why; a re-sign brings the update.
func TestExpiryNeverBricks(t *testing.T) {
	r := newRig(t, tufrepo.Options{Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }})
	r.publish(t, v2)
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	for range 2 { // and again: a failed poll changes nothing
		installed, err := a.Poll(t.Context())
		if installed || !errors.Is(err, fetch.ErrExpired) {
			t.Fatalf("Poll = %v, %v; want a refusal matching fetch.ErrExpired", installed, err)
		}
		r.untouched(t, err, regexp.MustCompile(`expired`))
	}
	re := regexp.MustCompile(`repository metadata expired at (\S+)`)
	m := re.FindStringSubmatch(a.State().LastResult)
	if m == nil {
		t.Fatalf("State().LastResult = %q, want %q", a.State().LastResult, re)
	}
	if at, err := time.Parse(time.RFC3339, m[1]); err != nil || !at.Before(time.Now()) {
		t.Errorf("expiry time %q: %v; want an RFC3339 time in the past", m[1], err)
	}

	repo, err := tufrepo.Open(r.repoDir, tufrepo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	installV2(t, r, a)
}

// TestFailedHealthCheck: the trial boot of v2 fails a health check: the
// device reboots, comes back on slot a, removes v2's entry and never tries
// v2 again.
func TestFailedHealthCheck(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	installV2(t, r, a)

	bootTrial(t, r, v2ID+"+2-1.conf")
	b := r.agent(t, disklayout.B, v2, []config.HealthCheck{{Command: "false"}})
	if err := b.Settle(t.Context()); err != nil {
		t.Fatalf("Settle of the failing trial: %v", err)
	}
	if r.reboots != 2 {
		t.Errorf("Reboot called %d times, want 2 (install, failed trial)", r.reboots)
	}
	const why = "health check command false: exit status 1: no output"
	st := r.state(t)
	if st.Phase != PhaseRebooting || st.Bad[v2] != why || st.Event != "rolled back from "+v2+": "+why {
		t.Errorf("state = %+v, want phase rebooting, %s bad and event %q", st, v2, "rolled back from "+v2+": "+why)
	}
	// The trial entry is never committed, and has no tries left: the
	// reboot goes straight to slot a.
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf", v2ID + "+0-1.conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}

	old := r.agent(t, disklayout.A, v1, nil)
	if err := old.Settle(t.Context()); err != nil {
		t.Fatalf("Settle back on slot a: %v", err)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
	st = r.state(t)
	if st.Phase != PhaseIdle || st.Bad[v2] != why || !strings.HasPrefix(st.Event, "rolled back from "+v2+": ") {
		t.Errorf("state = %+v, want idle with %s still bad (%q)", st, v2, why)
	}
	if sumFile(t, r.slots[disklayout.A].Device, -1) != r.sumA {
		t.Errorf("slot a's file changed")
	}
	// v2 is still the newest release: it is not tried again.
	installed, err := old.Poll(t.Context())
	if installed || err != nil || old.State().LastResult != "no update" {
		t.Errorf("Poll after the rollback = %v, %v (%q); want no update", installed, err, old.State().LastResult)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf"}; !equal(got, want) {
		t.Errorf("ESP entries after the poll = %q, want %q", got, want)
	}
	if r.reboots != 2 {
		t.Errorf("Reboot called %d times, want 2", r.reboots)
	}
}

// TestUpdateThroughNginx: the same repository served by nginx configured
// as docs/nginx.md says.
func TestUpdateThroughNginx(t *testing.T) {
	nginx := testutil.Nginx(t)
	r := newRig(t, tufrepo.Options{})
	r.url = testutil.StartNginx(t, nginx, r.repoDir, r.certDir)
	r.publish(t, v2)
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	installV2(t, r, a)
	// An idle poll through nginx (a conditional GET of timestamp.json) passes too.
	if err := a.Repo.Refresh(t.Context()); err != nil {
		t.Errorf("Refresh through nginx: %v", err)
	}
}

// breakSignature flips one hex digit of the first signature in a metadata
// file, keeping it valid JSON.
func breakSignature(t *testing.T, path string) {
	t.Helper()
	b := readFile(t, path)
	i := bytes.Index(b, []byte(`"sig"`))
	if i < 0 {
		t.Fatalf("%s: no signature", path)
	}
	j := bytes.IndexByte(b[i+len(`"sig"`):], '"')
	if j < 0 {
		t.Fatalf("%s: malformed signature", path)
	}
	k := i + len(`"sig"`) + j + 1 // the first hex digit
	if b[k] == '0' {
		b[k] = '1'
	} else {
		b[k] = '0'
	}
	writeFile(t, path, b)
}

// forgeRoot writes the next root version after the root in from, with a
// fresh root key and signed by that key only.
func forgeRoot(t *testing.T, from, to string) {
	t.Helper()
	root, err := metadata.Root().FromFile(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range root.Signed.Roles[metadata.ROOT].KeyIDs {
		if err := root.Signed.RevokeKey(id, metadata.ROOT); err != nil {
			t.Fatal(err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Signed.AddKey(key, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	root.Signed.Version++
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	root.ClearSignatures()
	if _, err := root.Sign(s); err != nil {
		t.Fatal(err)
	}
	if err := root.ToFile(to, false); err != nil {
		t.Fatal(err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
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

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// sumFile is the sha256 of the file's first n bytes (all when n < 0).
func sumFile(t *testing.T, p string, n int64) [sha256.Size]byte {
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
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	var s [sha256.Size]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestCommitSurvivesPowerCut: power is lost after the commit's rename on
// the ESP but before the agent saved "committed": the next boot runs the
// committed release and Settle completes the state instead of starting
// the update over.
func TestCommitSurvivesPowerCut(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	installV2(t, r, a)
	bootTrial(t, r, v2ID+".conf") // committed on the ESP …
	st := r.state(t)
	st.Phase = PhaseTrial // … but the state still says trial
	if err := st.Save(filepath.Join(r.dataDir, stateFile)); err != nil {
		t.Fatal(err)
	}
	b := r.agent(t, disklayout.B, v2, nil)
	if err := b.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != PhaseCommitted || st.Event != "committed "+v2 {
		t.Errorf("state after the power cut = %+v, want committed %s", st, v2)
	}
}

// TestResumeInterruptedDownload: power was lost halfway through writing
// v2 into slot b; after the restart the agent keeps the download, re-checks
// the half on disk and fetches only the rest.
func TestResumeInterruptedDownload(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	data := readFile(t, r.rel[v2].file(builder.RootfsFile))
	half := int64(len(data) / 2)
	f, err := os.OpenFile(r.slots[disklayout.B].Device, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[:half], 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st := &State{Phase: PhaseDownloading, Version: v2, Target: release.TargetPath("test", v2), Slot: disklayout.B, Bytes: half, Total: int64(len(data))}
	os.MkdirAll(r.dataDir, 0o755)
	if err := st.Save(filepath.Join(r.dataDir, stateFile)); err != nil {
		t.Fatal(err)
	}

	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := r.state(t); got.Phase != PhaseDownloading || got.Bytes != half {
		t.Fatalf("state after Settle = %+v, want the download kept at %d bytes", got, half)
	}
	before := r.srv.Stats().BytesOut
	installV2(t, r, a)
	sent := r.srv.Stats().BytesOut - before
	t.Logf("resumed at %d of %d bytes; the server sent %d", half, len(data), sent)
	if sent > int64(len(data))*6/10 {
		t.Errorf("the server sent %d bytes for the second half of a %d-byte image, want about half", sent, len(data))
	}
}

// TestAttestedCommitWithoutReferences: with commit "attested", a trial
// boot whose release facts carry no reference values cannot prove its
// measured boot: it is rolled back like a failed health check, the reason
// named. (The rig's small test kernel is not an EFI application, so its
// builds have no reference values; VMs test the rest: e2e/attest_test.go.)
func TestAttestedCommitWithoutReferences(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	r.publish(t, v2)
	a := r.agent(t, disklayout.A, v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	installV2(t, r, a)
	if st := r.state(t); st.Facts == nil || st.Facts.Version != v2 {
		t.Fatalf("state after the install keeps facts %+v, want %s's", st.Facts, v2)
	}
	bootTrial(t, r, v2ID+"+2-1.conf")
	b := r.agent(t, disklayout.B, v2, nil)
	b.Config.Commit = config.CommitAttested
	called := false
	b.MeasuredBoot = func(context.Context, *release.Facts) error { called = true; return nil }
	if err := b.Settle(t.Context()); err != nil {
		t.Fatalf("Settle of the trial: %v", err)
	}
	const why = "health check attestation: release 1.2.0-rc.1+build.7 was published without reference values (measured)"
	st := r.state(t)
	if called || st.Phase != PhaseRebooting || st.Bad[v2] != why || st.Event != "rolled back from "+v2+": "+why {
		t.Errorf("state = %+v (MeasuredBoot called: %v), want rebooting with %s bad: %q", st, called, v2, why)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf", v2ID + "+0-1.conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
}

// TestRollbackDetail: a trial of v2 in slot b whose boots ran out rolls
// back; the agent explains it with plumb-init's record of its fatal error
// for slot b (a dm-verity I/O error here), saved as rollback.json for
// plumbd status, and removes the record. Without a record for the slot it
// says the boot failed before plumb-init ran.
func TestRollbackDetail(t *testing.T) {
	for _, withRecord := range []bool{true, false} {
		t.Run(fmt.Sprint("record=", withRecord), func(t *testing.T) {
			r := newRig(t, tufrepo.Options{})
			a := r.agent(t, "a", v1, nil)
			if err := a.Settle(t.Context()); err != nil {
				t.Fatal(err)
			}
			r.publish(t, v2)
			installV2(t, r, a)
			bootTrial(t, r, "plumb-"+strings.ReplaceAll(v2, "+", "_")+"+0-3.conf")
			// plumb-init's record lives on the data partition: the parent of
			// the state directory.
			dataRoot := filepath.Dir(r.dataDir)
			rec := filepath.Join(dataRoot, bootrecord.BootFailureFile)
			if withRecord {
				writeFile(t, rec, []byte(`{"slot":"b","root_partuuid":"x","reason":"mounting root /dev/mapper/plumb-root (squashfs) on /newroot: input/output error","time":"2026-01-01T00:00:00Z"}`))
			}
			back := r.agent(t, "a", v1, nil)
			if err := back.Settle(t.Context()); err != nil {
				t.Fatal(err)
			}
			rb := LoadRollback(r.dataDir)
			if rb == nil || rb.Version != v2 || rb.Slot != "b" || rb.Reason != "boot failed" {
				t.Fatalf("rollback report = %+v", rb)
			}
			want := "no record from plumb-init for slot b"
			if withRecord {
				want = "plumb-init: mounting root /dev/mapper/plumb-root (squashfs) on /newroot: input/output error"
				if _, err := os.Stat(rec); !os.IsNotExist(err) {
					t.Errorf("plumb-init's record was not removed (stat: %v)", err)
				}
			}
			if !strings.HasPrefix(rb.Detail, want) {
				t.Errorf("detail = %q, want it to start with %q", rb.Detail, want)
			}
			if st := r.state(t); st.Bad[v2] != "boot failed" {
				t.Errorf("state bad = %v", st.Bad)
			}
		})
	}
}

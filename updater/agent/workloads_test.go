package agent

// Host acceptance tests of the workloads (issue 7): a real containerd
// (Debian's 1.6 daemon with runc, started by the test in its own mount
// namespace, root, state and socket under a temp dir) driven by the
// reconciler through the containerd v2 client; OCI image archives made by
// the test with the host's static busybox; manifests and archives
// published with tufrepo (signed by the delegated role apps), served over
// HTTPS by plumb serve's server and fetched by the real TUF client. The
// rig's seams (slots as files, ESP as a directory, Reboot recorded) are as
// in integration_test.go.

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/reconcile"
	"github.com/plumb-os/plumb/updater/reconcile/containerdtest"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

const group = "demo"

// appRig is the rig plus containerd, the reconciler and test images.
type appRig struct {
	*rig
	d       *containerdtest.Daemon
	ctr     *client.Client // the test's own view of containerd
	rec     *reconcile.Reconciler
	appData string
	images  map[string]image // by name
	work    string
}

type image struct {
	file   string // the archive
	digest string // its manifest digest
}

func newAppRig(t *testing.T) *appRig {
	t.Helper()
	d := containerdtest.Start(t) // skips under -short
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	r := &appRig{rig: newRig(t, tufrepo.Options{}), d: d, images: map[string]image{}, work: t.TempDir()}
	r.appData = filepath.Join(r.work, "apps")
	// Two images that differ in content (a marker file), so their digests differ.
	for _, name := range []string{"alpha", "beta", "gamma"} {
		files := append(ocitest.Busybox(bb), ocitest.File{Name: "etc/image", Data: []byte(name + "\n")})
		file := filepath.Join(r.work, name+".tar")
		dg, err := ocitest.Write(file, ocitest.Image{Name: "plumb.test/" + name + ":1", Files: files, Cmd: []string{"/bin/busybox", "sleep", "100000"}})
		if err != nil {
			t.Fatal(err)
		}
		r.images[name] = image{file: file, digest: dg}
	}
	c, err := client.New(d.Address, client.WithDefaultNamespace(reconcile.DefaultNamespace))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.ctr = c
	rec, err := reconcile.New(t.Context(), reconcile.Options{
		Address: d.Address, MountDir: d.MountDir, DataDir: r.appData, StateDir: filepath.Join(r.dataDir, "apps"),
		RestartDelay: 200 * time.Millisecond, Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	r.rec = rec
	return r
}

// agent is the device's agent with workloads for group.
func (r *appRig) agent(t *testing.T, running disklayout.Slot, version string) *Agent {
	a := r.rig.agent(t, running, version, nil)
	a.Config.Workloads = &config.Workloads{Group: group}
	a.Workloads = r.rec
	a.Log = testLogger(t)
	return a
}

// container is a manifest entry for image name.
func (r *appRig) container(name, img string, cmd ...string) workload.Container {
	return workload.Container{
		Name: name, Image: "plumb.test/" + img + "@" + r.images[img].digest,
		Target: "apps/" + group + "/" + img + ".tar", Command: cmd,
	}
}

// publish publishes m with the archives of the images its containers name.
func (r *appRig) publish(t *testing.T, m *workload.Manifest, o tufrepo.WorkloadOptions) error {
	t.Helper()
	repo, err := tufrepo.Open(r.repoDir, r.repoOpts)
	if err != nil {
		t.Fatal(err)
	}
	archives := map[string]string{}
	for _, c := range m.Containers {
		img := strings.TrimSuffix(filepath.Base(c.Target), ".tar")
		archives[c.Target] = r.images[img].file
	}
	_, err = repo.PublishWorkloads(t.Context(), group, m, archives, o)
	return err
}

// pids returns the task PID of every container in the namespace (0: no
// running task).
func (r *appRig) pids(t *testing.T) map[string]uint32 {
	t.Helper()
	ctx := namespaces.WithNamespace(t.Context(), reconcile.DefaultNamespace)
	ctrs, err := r.ctr.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint32{}
	for _, c := range ctrs {
		out[c.ID()] = 0
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		if st, err := task.Status(ctx); err == nil && st.Status == client.Running {
			out[c.ID()] = task.Pid()
		}
	}
	return out
}

// waitRunning waits until exactly the named containers run, and returns
// their PIDs.
func (r *appRig) waitRunning(t *testing.T, names ...string) map[string]uint32 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := r.pids(t)
		ok := len(p) == len(names)
		for _, n := range names {
			ok = ok && p[n] != 0
		}
		if ok {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers = %v, want exactly %v running; status %+v\ncontainerd log:\n%s", p, names, r.rec.Status(), r.d.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *appRig) imageNames(t *testing.T) []string {
	t.Helper()
	ctx := namespaces.WithNamespace(t.Context(), reconcile.DefaultNamespace)
	list, err := r.ctr.ImageService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range list {
		out = append(out, img.Name)
	}
	return out
}

func (r *appRig) status(name string) reconcile.ContainerStatus {
	for _, c := range r.rec.Status().Containers {
		if c.Name == name {
			return c
		}
	}
	return reconcile.ContainerStatus{}
}

// TestWorkloads: the reconciler runs the published manifest, replaces a
// changed container and leaves the other running, stops a removed one,
// restarts one that exits, and garbage-collects unused images.
func TestWorkloads(t *testing.T) {
	r := newAppRig(t)
	a := r.agent(t, disklayout.A, v1)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}

	// 1. Two containers from archives; web writes its env into its mount.
	web := r.container("web", "alpha", "/bin/sh", "-c", `echo "$GREETING" > /srv/out/hello && exec /bin/busybox sleep 100000`)
	web.Env = map[string]string{"GREETING": "hello from web"}
	web.Mounts = []workload.Mount{{Source: "web", Target: "/srv/out"}}
	worker := r.container("worker", "beta")
	m := &workload.Manifest{Containers: []workload.Container{web, worker}}
	start := time.Now()
	if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	p1 := r.waitRunning(t, "web", "worker")
	t.Logf("FIGURE publish to both containers running: %.2fs", time.Since(start).Seconds())
	// Running means the task started, not that its shell wrote the file
	// yet: wait for it (a deadline against a hang, not a timed check).
	hello := filepath.Join(r.appData, group, "web", "hello")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(hello)
		if err == nil && string(b) == "hello from web\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("web's mount after 30 s: hello = %q, %v; want the GREETING it was given", b, err)
			break
		}
	}
	if st := r.status("web"); st.State != reconcile.StateRunning || st.Digest != r.images["alpha"].digest || st.PID != p1["web"] {
		t.Errorf("status(web) = %+v, want running %s with PID %d", st, r.images["alpha"].digest, p1["web"])
	}

	// An unchanged manifest changes nothing.
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if p := r.pids(t); p["web"] != p1["web"] || p["worker"] != p1["worker"] {
		t.Errorf("after a poll with nothing new: PIDs %v, want %v", p, p1)
	}

	// 2. worker changes image: it is replaced, web keeps its task.
	worker2 := r.container("worker", "gamma")
	m = &workload.Manifest{Containers: []workload.Container{web, worker2}}
	if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	p2 := r.waitRunning(t, "web", "worker")
	if p2["web"] != p1["web"] {
		t.Errorf("web's PID %d -> %d: want it left running", p1["web"], p2["web"])
	}
	if p2["worker"] == p1["worker"] {
		t.Errorf("worker's PID stayed %d: want it replaced", p2["worker"])
	}
	if st := r.status("worker"); st.Digest != r.images["gamma"].digest {
		t.Errorf("status(worker) = %+v, want image %s", st, r.images["gamma"].digest)
	}
	// beta is no longer used: garbage-collected.
	if names := strings.Join(r.imageNames(t), " "); strings.Contains(names, r.images["beta"].digest) || !strings.Contains(names, r.images["gamma"].digest) {
		t.Errorf("images = %s; want gamma's, not beta's", names)
	}

	// 3. worker removed: stopped and deleted; web untouched.
	m = &workload.Manifest{Containers: []workload.Container{web}}
	if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	p3 := r.waitRunning(t, "web")
	if p3["web"] != p1["web"] {
		t.Errorf("web's PID %d -> %d: want it left running", p1["web"], p3["web"])
	}
	ctx := namespaces.WithNamespace(t.Context(), reconcile.DefaultNamespace)
	if _, err := r.ctr.LoadContainer(ctx, "worker"); !errdefs.IsNotFound(err) {
		t.Errorf("worker after its removal: LoadContainer = %v, want not found", err)
	}

	// 4. Restart policies: flaky exits 3 after a moment (on-failure:
	// restarted); done exits 0 (on-failure: left exited).
	flaky := r.container("flaky", "beta", "/bin/sh", "-c", "sleep 0.5; exit 3")
	flaky.Restart = workload.RestartOnFailure
	done := r.container("done", "beta", "/bin/true")
	done.Command = []string{"/bin/busybox", "true"}
	done.Restart = workload.RestartOnFailure
	m = &workload.Manifest{Containers: []workload.Container{web, flaky, done}}
	if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.status("flaky").Restarts < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("flaky not restarted twice in 30s: %+v", r.status("flaky"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := r.status("flaky"); st.ExitCode == nil || *st.ExitCode != 3 {
		t.Errorf("status(flaky) = %+v, want last exit code 3", st)
	}
	for r.status("done").State != reconcile.StateExited {
		if time.Now().After(deadline) {
			t.Fatalf("done not exited: %+v", r.status("done"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if st := r.status("done"); st.Restarts != 0 || st.State != reconcile.StateExited || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Errorf("status(done) = %+v, want exited 0, never restarted", st)
	}
	if p := r.pids(t); p["web"] != p1["web"] {
		t.Errorf("web's PID %d -> %d: want it left running", p1["web"], p["web"])
	}
	// plumbd status reads this file.
	b, err := os.ReadFile(filepath.Join(r.dataDir, "apps", reconcile.StatusFile))
	if err != nil || !strings.Contains(string(b), `"name": "flaky"`) {
		t.Errorf("status.json = %s, %v; want the containers", b, err)
	}
}

// TestWorkloadsRefused: a manifest signed by the wrong role, a manifest
// whose image digest does not match the archive, a tampered archive and
// an OS release signed by the apps role are each refused with a clear
// message, and the running containers are left as they were.
func TestWorkloadsRefused(t *testing.T) {
	r := newAppRig(t)
	a := r.agent(t, disklayout.A, v1)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	good := &workload.Manifest{Containers: []workload.Container{r.container("web", "alpha"), r.container("worker", "beta")}}
	if err := r.publish(t, good, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := r.waitRunning(t, "web", "worker")
	unchanged := func(t *testing.T, err error, re string) {
		t.Helper()
		if err == nil || !regexp.MustCompile(re).MatchString(err.Error()) {
			t.Errorf("Poll = %v, want an error matching %q", err, re)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q: want one line", err)
		}
		if got := r.pids(t); len(got) != 2 || got["web"] != want["web"] || got["worker"] != want["worker"] {
			t.Errorf("containers = %v, want %v left as they were", got, want)
		}
		if st := r.state(t); st.Workloads == "" {
			t.Errorf("state.workloads_error empty after a refusal")
		}
	}

	t.Run("digest mismatch", func(t *testing.T) {
		// The manifest pins gamma's digest but ships beta's archive.
		w := r.container("worker", "beta")
		w.Image = "plumb.test/beta@" + r.images["gamma"].digest
		m := &workload.Manifest{Containers: []workload.Container{r.container("web", "alpha"), w}}
		if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := a.Poll(t.Context())
		unchanged(t, err, `archive apps/demo/beta.tar holds no image `+r.images["gamma"].digest+` \(it holds `+r.images["beta"].digest+`\)`)
		if !errors.Is(err, reconcile.ErrRefused) {
			t.Errorf("error %v: want reconcile.ErrRefused", err)
		}
	})

	t.Run("tampered archive", func(t *testing.T) {
		// A correct manifest with a new archive; the served bytes are then
		// changed (same length).
		m := &workload.Manifest{Containers: []workload.Container{r.container("web", "alpha"), r.container("worker", "gamma")}}
		if err := r.publish(t, m, tufrepo.WorkloadOptions{}); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(r.repoDir, "repository", "targets", "apps", group, "*.gamma.tar"))
		if len(files) != 1 {
			t.Fatalf("gamma.tar targets: %v", files)
		}
		b := readFile(t, files[0])
		b[len(b)/2] ^= 0xff
		writeFile(t, files[0], b)
		_, err := a.Poll(t.Context())
		unchanged(t, err, `target apps/demo/gamma.tar: sha256 mismatch`)
		if !errors.Is(err, fetch.ErrVerification) {
			t.Errorf("error %v: want fetch.ErrVerification", err)
		}
		b[len(b)/2] ^= 0xff
		writeFile(t, files[0], b)
	})

	t.Run("OS release signed by apps", func(t *testing.T) {
		// The apps keys sign a release target: the delegation's paths
		// keep the device from seeing it at all.
		signExtraTarget(t, r.rig, "apps", "test/9.0.0/rootfs.sqfs")
		if err := a.Repo.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		c := a.Repo.(*fetch.Client)
		if _, err := c.Lookup(t.Context(), "test/9.0.0/rootfs.sqfs"); !errors.Is(err, fetch.ErrNotFound) {
			t.Errorf("Lookup(release signed by apps) = %v, want not found", err)
		}
		ts, _ := c.Targets()
		for _, tg := range ts {
			if strings.Contains(tg.Path, "9.0.0") {
				t.Errorf("Targets lists %s, signed by apps only", tg.Path)
			}
		}
	})

	t.Run("signed by the OS role", func(t *testing.T) {
		// The OS keys (targets) sign a manifest for the group.
		m := &workload.Manifest{Containers: []workload.Container{r.container("evil", "gamma")}}
		if err := r.publish(t, m, tufrepo.WorkloadOptions{Role: metadata.TARGETS}); err != nil {
			t.Fatal(err)
		}
		_, err := a.Poll(t.Context())
		unchanged(t, err, `target apps/demo/workloads.json: signed by the targets role \(the OS keys\); targets under apps/ must be signed by the delegated role apps`)
		if !errors.Is(err, fetch.ErrVerification) {
			t.Errorf("error %v: want fetch.ErrVerification", err)
		}
	})
}

// TestWorkloadsAfterOSUpdate: a new OS release and a new manifest arrive
// together: the OS goes first (the containers keep running through its
// download), the manifest is applied once the new slot is committed.
func TestWorkloadsAfterOSUpdate(t *testing.T) {
	r := newAppRig(t)
	a := r.agent(t, disklayout.A, v1)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := &workload.Manifest{Containers: []workload.Container{r.container("web", "alpha")}}
	if err := r.publish(t, first, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	p1 := r.waitRunning(t, "web")

	second := &workload.Manifest{Containers: []workload.Container{r.container("web", "alpha"), r.container("worker", "beta")}}
	if err := r.publish(t, second, tufrepo.WorkloadOptions{}); err != nil {
		t.Fatal(err)
	}
	r.rig.publish(t, v2)
	installV2(t, r.rig, a) // Poll installs v2 and "reboots"
	if p := r.pids(t); len(p) != 1 || p["web"] != p1["web"] {
		t.Errorf("after the OS install: containers %v, want only web, still PID %d", p, p1["web"])
	}

	// Trial boot of v2: Settle commits; workloads are not touched on trial.
	bootTrial(t, r.rig, v2ID+"+2-1.conf")
	b := r.agent(t, disklayout.B, v2)
	if err := b.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.state(t); st.Phase != PhaseCommitted {
		t.Fatalf("state after the trial boot = %+v, want committed", st)
	}
	if err := b.StartWorkloads(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Poll(t.Context()); err != nil {
		t.Fatalf("Poll after commit: %v", err)
	}
	r.waitRunning(t, "web", "worker")
}

// signExtraTarget adds a target file entry to role's metadata (apps or
// targets) signed with the repository's key file of that role, and
// re-signs snapshot and timestamp: a repository whose owners misbehave.
func signExtraTarget(t *testing.T, r *rig, role, path string) {
	t.Helper()
	meta := func(n string) string { return r.metaPath(n) }
	ts, err := metadata.Timestamp().FromFile(meta("timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	snapV := ts.Signed.Meta["snapshot.json"].Version
	snap, err := metadata.Snapshot().FromFile(meta(versionedName(snapV, "snapshot")))
	if err != nil {
		t.Fatal(err)
	}
	roleV := snap.Signed.Meta[role+".json"].Version
	md, err := metadata.Targets().FromFile(meta(versionedName(roleV, role)))
	if err != nil {
		t.Fatal(err)
	}
	tf := metadata.TargetFile()
	tf.Length, tf.Path = 4, path
	tf.Hashes["sha256"] = make([]byte, 32)
	md.Signed.Targets[path] = tf
	md.Signed.Version++
	sign := func(m interface {
		ClearSignatures()
		Sign(signature.Signer) (*metadata.Signature, error)
	}, key string) {
		s := loadSigner(t, filepath.Join(r.repoDir, "keys", key+".key"))
		m.ClearSignatures()
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	sign(md, role)
	writeMeta(t, meta(versionedName(md.Signed.Version, role)), md)
	snap.Signed.Meta[role+".json"] = metadata.MetaFile(md.Signed.Version)
	snap.Signed.Version++
	sign(snap, "snapshot")
	writeMeta(t, meta(versionedName(snap.Signed.Version, "snapshot")), snap)
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(snap.Signed.Version)
	ts.Signed.Version++
	sign(ts, "timestamp")
	writeMeta(t, meta("timestamp.json"), ts)
}

func versionedName(v int64, role string) string {
	return strconv.FormatInt(v, 10) + "." + role + ".json"
}

// loadSigner reads a PKCS#8 PEM ed25519 key file of the repository.
func loadSigner(t *testing.T, path string) signature.Signer {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadED25519Signer(k.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

func writeMeta(t *testing.T, path string, m interface{ ToBytes(bool) ([]byte, error) }) {
	t.Helper()
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

package e2e

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/server/store"
	"github.com/plumb-os/plumb/testvm"
)

// fleet is the server side of the VM update tests: a TUF repository served
// over HTTPS on 127.0.0.1, and the builds published to it. Each test has
// its own (its builds trust its repository's root).
type fleet struct {
	t        *testing.T
	ctx      context.Context
	work     string
	hardware string
	rootJSON string
	join     string // the file holding the fleet's join token (plumb serve's DIR/join-token)
	port     int
	srv      *server.Server
	repo     *tufrepo.Repo
	repoDir  string
	files    string // extra entries for the recipe's files list (YAML, indented)
	// containers keeps containerd and runc in the fleet's builds. Without
	// it the builds drop them (rcS starts containerd only when it is there):
	// the update, rollback, power-cut, delta, attestation and install tests
	// do not run workloads, and the 96 MB demo image would double their
	// downloads and plumb-init's PCR 15 hash at every boot. TestBootDemo,
	// TestDemoImage, TestReproducible and make demo use the whole recipe.
	containers bool
}

func newFleet(t *testing.T, ctx context.Context, hardware string) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds images and boots VMs: not in -short")
	}
	if err := testvm.Tools(); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ctx: ctx, work: t.TempDir(), hardware: hardware}
	repoDir := filepath.Join(f.work, "repo")
	f.repoDir = repoDir
	if err := tufrepo.Init(ctx, repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	// The fleet's server is the verifier too; it trusts swtpm's EK CA.
	cas, err := testvm.TPMCACerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pem, err := os.ReadFile(c)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("EK CA %s: %v", c, err)
		}
	}
	// It is the fleet service too, as plumb serve is: devices join its
	// default organization with the join token the builds carry.
	if f.srv, err = server.New(server.Options{Dir: repoDir, Fleet: &server.FleetOptions{Bootstrap: true}, Attest: &server.AttestOptions{ManufacturerCAs: pool}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	f.join = filepath.Join(repoDir, server.JoinTokenFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.Serve(ctx, l)
	f.port = l.Addr().(*net.TCPAddr).Port
	f.rootJSON = filepath.Join(repoDir, "repository", "metadata", "1.root.json")
	if f.repo, err = tufrepo.Open(repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// build builds the demo recipe at version for the fleet's hardware with an
// agent that polls the fleet's repository every 2 s. extra is appended to
// the agent section (health checks, …); cmdline, if set, replaces the
// kernel command line; edits change the recipe's text last.
func (f *fleet) build(version, cmdline, extra string, edits ...func(string) string) string {
	f.t.Helper()
	data, err := os.ReadFile(demoRecipe(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	text := string(data)
	text = strings.Replace(text, "version: 1.0.0", "version: "+version, 1)
	text = strings.Replace(text, "hardware: qemu-x86_64", "hardware: "+f.hardware, 1)
	text = strings.Replace(text, "./qemu-x86_64/rootfs", filepath.Join(filepath.Dir(demoRecipe(f.t)), "qemu-x86_64", "rootfs"), 1)
	if !f.containers {
		const debs = "- deb: [busybox-static, containerd, runc, libc6, libgcc-s1, libseccomp2]"
		if !strings.Contains(text, debs) {
			f.t.Fatalf("the demo recipe's package list changed; update fleet.build: want %q in it", debs)
		}
		text = strings.Replace(text, debs, "- deb: [busybox-static]", 1)
	}
	if f.files != "" {
		text = strings.Replace(text, "\nfiles:\n", "\nfiles:\n"+f.files, 1)
	}
	if cmdline != "" {
		text = regexp.MustCompile(`(?m)^  cmdline: .*$`).ReplaceAllString(text, "  cmdline: \""+cmdline+"\"")
	}
	text += fmt.Sprintf("\nagent:\n  repository: https://10.0.2.100/\n  root: %s\n  ca: %s\n  join_token: %s\n  poll: 2s\n%s", f.rootJSON, f.srv.CACertPath(), f.join, extra)
	for _, edit := range edits {
		text = edit(text)
	}
	p := filepath.Join(f.work, "recipe-"+version+".yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
	out := filepath.Join(f.work, "build-"+version)
	if _, err := buildRecipe(f.ctx, p, out); err != nil {
		f.t.Fatalf("building %s: %v", version, err)
	}
	return out
}

func (f *fleet) publish(build string) {
	f.t.Helper()
	if _, err := f.repo.Publish(f.ctx, build, tufrepo.PublishOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// publishDeltas publishes build with deltas from the older releases, as
// plumb publish does by default.
func (f *fleet) publishDeltas(build string) {
	f.t.Helper()
	if _, err := f.repo.Publish(f.ctx, build, tufrepo.PublishOptions{Deltas: tufrepo.DefaultDeltas}); err != nil {
		f.t.Fatal(err)
	}
}

// device is one VM: a copy of a build's disk, its OVMF vars and TPM.
type device struct {
	t    *testing.T
	f    *fleet
	dir  string
	disk string
	man  *builder.Manifest
	vm   *testvm.VM
	// secureBoot boots OVMF's Secure Boot build with the snakeoil keys.
	secureBoot bool
}

// flash makes a device named name from a build's disk image; t is the
// test that uses it (a subtest may run in parallel with others).
func (f *fleet) flash(t *testing.T, build, name string) *device {
	t.Helper()
	d := &device{t: t, f: f, dir: filepath.Join(f.work, "vm-"+name)}
	os.MkdirAll(d.dir, 0o755)
	d.disk = filepath.Join(d.dir, "disk.img")
	if err := testvm.CopyImage(d.disk, filepath.Join(build, builder.DiskFile)); err != nil {
		t.Fatal(err)
	}
	var err error
	if d.man, err = builder.ReadManifest(filepath.Join(build, builder.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	return d
}

// powerOn starts the VM (again); the previous run must have ended.
func (d *device) powerOn() *testvm.VM {
	d.t.Helper()
	opts := []testvm.Option{testvm.WithDisk(d.disk), testvm.WithTPM(), testvm.WithGuestForward(443, d.f.port)}
	if d.secureBoot {
		opts = append(opts, testvm.WithSecureBoot())
	}
	vm, err := testvm.Start(d.f.ctx, d.dir, opts...)
	if err != nil {
		d.t.Fatal(err)
	}
	d.vm = vm
	d.t.Cleanup(func() { vm.Close() })
	return vm
}

func (d *device) waitFor(m testvm.Mark, pattern string) []string {
	d.t.Helper()
	got, err := d.vm.WaitForAfter(d.f.ctx, m, regexp.MustCompile(pattern))
	if err != nil {
		d.t.Fatal(err)
	}
	return got
}

// entries lists the ESP's boot entries (the VM must be off).
func (d *device) entries() string {
	d.t.Helper()
	esp := extractPartition(d.t, d.disk, partition(d.t, d.man, disklayout.NameESP))
	out, err := exec.Command("mdir", "-b", "-i", esp, "::/loader/entries").CombinedOutput()
	if err != nil {
		d.t.Fatalf("mdir: %v\n%s", err, out)
	}
	return string(out)
}

// writeData puts a file on the data partition (the VM must be off).
func (d *device) writeData(name string, content []byte) {
	d.t.Helper()
	src := filepath.Join(d.dir, "canary-src")
	os.WriteFile(src, content, 0o644)
	d.debugfs(true, "write "+src+" "+name)
}

// readData reads a file from the data partition (the VM must be off).
func (d *device) readData(name string) string {
	d.t.Helper()
	return d.debugfs(false, "cat "+name)
}

// debugfs runs one debugfs request on the data partition, copying it out
// of the disk and, when writing, back in.
func (d *device) debugfs(write bool, request string) string {
	d.t.Helper()
	p := partition(d.t, d.man, disklayout.NameData)
	img := extractPartition(d.t, d.disk, p)
	// After a power cut the newest metadata may be only in the journal,
	// which debugfs does not read: replay it as the next mount would.
	if out, err := exec.Command("e2fsck", "-E", "journal_only", "-y", img).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() >= 4 {
			d.t.Fatalf("e2fsck -E journal_only (replaying the data partition's journal): %v\n%s", err, out)
		}
	}
	args := []string{"-R", request, img}
	if write {
		args = append([]string{"-w"}, args...)
	}
	out, err := exec.Command("debugfs", args...).Output()
	if err != nil {
		d.t.Fatalf("debugfs %s: %v", request, err)
	}
	if write {
		in, _ := os.Open(img)
		defer in.Close()
		disk, err := os.OpenFile(d.disk, os.O_WRONLY, 0)
		if err != nil {
			d.t.Fatal(err)
		}
		defer disk.Close()
		if _, err := io.Copy(io.NewOffsetWriter(disk, p.Start), in); err != nil {
			d.t.Fatal(err)
		}
	}
	return string(out)
}

// lastReport is the device's last status report as the fleet service
// keeps it (compact JSON), or "" when it has none.
func (f *fleet) lastReport(id string) string {
	d, err := f.srv.Store().Device(f.ctx, id)
	if err != nil {
		return ""
	}
	return string(d.Report)
}

// reports is the last status report of every device of the fleet's
// organization (default), as the fleet service keeps them.
func (f *fleet) reports() []string {
	st := f.srv.Store()
	org, err := st.OrgByName(f.ctx, "default")
	if err != nil {
		return nil
	}
	devs, err := st.Devices(f.ctx, store.DeviceQuery{Org: org.ID})
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range devs {
		out = append(out, string(d.Report))
	}
	return out
}

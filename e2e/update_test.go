package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/diskimg"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/server"
	"github.com/plumb-os/plumb/testvm"
)

// updateRecipe is the demo recipe at another version, with an agent that
// pulls from repo through the VM's forward to the host.
func updateRecipe(t *testing.T, dir, version, rootJSON, ca string) string {
	t.Helper()
	data, err := os.ReadFile(demoRecipe(t))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	text = strings.Replace(text, "version: 1.0.0", "version: "+version, 1)
	text = strings.Replace(text, "./qemu-x86_64/rootfs", filepath.Join(filepath.Dir(demoRecipe(t)), "qemu-x86_64", "rootfs"), 1)
	text += fmt.Sprintf("\nagent:\n  repository: https://10.0.2.100/\n  root: %s\n  ca: %s\n  poll: 2s\n", rootJSON, ca)
	p := filepath.Join(dir, "recipe-"+version+".yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUpdate: a device running v1 pulls v2 from a TUF repository served
// over HTTPS on 127.0.0.1, installs it into slot b, reboots into it on
// trial, passes its health checks and commits; slot a's entry stays as the
// fallback.
func TestUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two images and boots a VM: not in -short")
	}
	if err := testvm.Tools(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	work := t.TempDir()
	repoDir := filepath.Join(work, "repo")
	if err := tufrepo.Init(ctx, repoDir, tufrepo.Options{}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Dir: repoDir})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, l)
	port := l.Addr().(*net.TCPAddr).Port
	rootJSON := filepath.Join(repoDir, "repository", "metadata", "1.root.json")

	builds := map[string]string{}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		out := filepath.Join(work, "build-"+v)
		if _, err := buildRecipe(ctx, updateRecipe(t, work, v, rootJSON, srv.CACertPath()), out); err != nil {
			t.Fatalf("building %s: %v", v, err)
		}
		builds[v] = out
	}
	repo, err := tufrepo.Open(repoDir, tufrepo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(ctx, builds["1.0.0"], tufrepo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}

	vmDir := filepath.Join(work, "vm")
	os.MkdirAll(vmDir, 0o755)
	disk := filepath.Join(vmDir, "disk.img")
	if err := testvm.CopyImage(disk, filepath.Join(builds["1.0.0"], builder.DiskFile)); err != nil {
		t.Fatal(err)
	}
	vm, err := testvm.Start(ctx, vmDir, testvm.WithDisk(disk), testvm.WithTPM(), testvm.WithGuestForward(443, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`plumbd \S+ started: .*version=1\.0\.0 slot=a`)); err != nil {
		t.Fatal(err)
	}
	// v1's first poll finds nothing newer.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`msg="update check|no update|level=`)); err != nil {
		t.Logf("no agent log line yet: %v", err)
	}

	mark := vm.Mark()
	published := time.Now()
	if _, err := repo.Publish(ctx, builds["2.0.0"], tufrepo.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitForAfter(ctx, mark, regexp.MustCompile(`plumbd \S+ started: .*version=2\.0\.0 slot=b`)); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitForAfter(ctx, mark, regexp.MustCompile(`release committed.*version=2\.0\.0`)); err != nil {
		t.Fatal(err)
	}
	t.Logf("publish to commit: %.1fs", time.Since(published).Seconds())
	st := srv.Stats()
	t.Logf("server: %d requests, %d answered 304, %d bytes sent", st.Requests, st.NotModified, st.BytesOut)
	vm.Close()

	// Power on again: the device boots v2 from slot b, committed.
	vm2, err := testvm.Start(ctx, vmDir, testvm.WithDisk(disk), testvm.WithTPM(), testvm.WithGuestForward(443, port))
	if err != nil {
		t.Fatal(err)
	}
	status := regexp.MustCompile(`plumb: status \{.*"version":"2\.0\.0".*"slot":"b".*"update":\{"phase":"committed".*"event":"committed 2\.0\.0"`)
	if _, err := vm2.WaitFor(ctx, status); err != nil {
		t.Errorf("plumbd status after a power cycle: %v", err)
	}
	vm2.Close()

	// Both entries on the ESP: v2 committed, v1 kept as the fallback.
	m, err := builder.ReadManifest(filepath.Join(builds["1.0.0"], builder.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	esp := extractPartition(t, disk, partition(t, m, diskimg.NameESP))
	out, err := exec.Command("mdir", "-b", "-i", esp, "::/loader/entries").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"plumb-2.0.0.conf", "plumb-1.0.0.conf"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("ESP entries %q lack %s", out, want)
		}
	}
}

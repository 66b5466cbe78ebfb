package reconcile

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/reconcile/containerdtest"
	"github.com/plumb-os/plumb/updater/reconcile/ocitest"
)

// TestPullPinned: an image given as a registry reference (no archive) is
// pulled by its pinned digest through containerd's resolver and run; a
// digest the registry does not have is refused and changes nothing. The
// registry is go-containerregistry's in-memory one on 127.0.0.1 (plain
// HTTP, which containerd's resolver allows for localhost).
func TestPullPinned(t *testing.T) {
	d := containerdtest.Start(t)
	bb := testutil.RequireTool(t, "busybox", "busybox-static")
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	blobs, dg, err := ocitest.Blobs(ocitest.Image{Files: ocitest.Busybox(bb), Cmd: []string{"/bin/busybox", "sleep", "100000"}})
	if err != nil {
		t.Fatal(err)
	}
	// Push: blobs with monolithic uploads, then the manifest by digest.
	for _, b := range blobs {
		var req *http.Request
		if b.MediaType == "application/vnd.oci.image.manifest.v1+json" {
			req, _ = http.NewRequest(http.MethodPut, srv.URL+"/v2/plumb/bb/manifests/"+b.Digest, bytes.NewReader(b.Data))
			req.Header.Set("Content-Type", b.MediaType)
		} else {
			req, _ = http.NewRequest(http.MethodPost, srv.URL+"/v2/plumb/bb/blobs/uploads/?digest="+b.Digest, bytes.NewReader(b.Data))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("pushing %s: HTTP %d", b.Digest, resp.StatusCode)
		}
	}
	dir := t.TempDir()
	r, err := New(t.Context(), Options{Address: d.Address, DataDir: filepath.Join(dir, "data"), StateDir: filepath.Join(dir, "state"), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ref := fmt.Sprintf("%s/plumb/bb@%s", host, dg)
	m := &workload.Manifest{Containers: []workload.Container{{Name: "pulled", Image: ref}}}
	if err := r.Apply(t.Context(), "g", m, "one", nil); err != nil {
		t.Fatalf("Apply(%s): %v\n%s", ref, err, d.LogTail())
	}
	st := waitState(t, r, "pulled", StateRunning)
	if st.Digest != dg {
		t.Errorf("status %+v, want digest %s", st, dg)
	}

	// A digest the registry does not serve: refused, pulled left running.
	missing := "sha256:" + strings.Repeat("c", 64)
	m2 := &workload.Manifest{Containers: []workload.Container{{Name: "pulled", Image: ref}, {Name: "other", Image: host + "/plumb/bb@" + missing}}}
	err = r.Apply(t.Context(), "g", m2, "two", nil)
	if err == nil || !strings.Contains(err.Error(), "container other: pulling "+host+"/plumb/bb@"+missing) {
		t.Errorf("Apply(missing digest) = %v, want a pull error for container other", err)
	}
	if got := waitState(t, r, "pulled", StateRunning); got.PID != st.PID {
		t.Errorf("pulled's PID %d -> %d after a refused apply", st.PID, got.PID)
	}
	if n := len(r.Status().Containers); n != 1 {
		t.Errorf("%d containers after a refused apply, want 1", n)
	}
}

func waitState(t *testing.T, r *Reconciler, name, state string) ContainerStatus {
	t.Helper()
	for i := 0; i < 400; i++ {
		for _, c := range r.Status().Containers {
			if c.Name == name && c.State == state && (state != StateRunning || c.PID != 0) {
				return c
			}
		}
		sleep50()
	}
	t.Fatalf("container %s not %s: %+v", name, state, r.Status())
	return ContainerStatus{}
}

package fetch

import (
	"bufio"
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/fetch/fetchtest"
)

// BenchmarkDownload1GiB streams a 1 GiB target from a local HTTPS server
// into a file and reports MB/s and the process's peak RSS (VmHWM). When
// curl is installed it also times `curl -sk URL | dd of=FILE bs=1M`
// against the same server (metric curl-MB/s). Run by bench/download.sh.
func BenchmarkDownload1GiB(b *testing.B) {
	const size = 1 << 30
	r := fetchtest.NewRepo(b)
	src := filepath.Join(b.TempDir(), "big")
	fetchtest.WritePRNG(b, src, size)
	const name = "bench/1.0.0/rootfs.sqfs"
	r.AddTargetFile(name, src)
	r.Publish()
	srv := fetchtest.Serve(b, r.Dir)
	c, err := New(Options{Repo: srv.URL, MetadataDir: b.TempDir(), TrustedRoot: r.RootJSON(1), HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	slot := filepath.Join(b.TempDir(), "slot")
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Create(slot)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Download(b.Context(), name, f, nil); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(vmHWM(b))/(1<<20), "peak-RSS-MiB")

	if _, err := exec.LookPath("curl"); err != nil {
		b.Logf("curl not found (apt-get install curl): no comparison")
		return
	}
	ca := filepath.Join(b.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	url := srv.URL + "/" + strings.TrimPrefix(r.TargetPath(name)[len(r.Dir):], "/")
	start := time.Now()
	cmd := exec.CommandContext(b.Context(), "sh", "-c", `curl -sk "$1" | dd of="$2" bs=1M status=none`, "sh", url, slot)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("curl | dd: %v: %s", err, stderr.String())
	}
	d := time.Since(start)
	if st, err := os.Stat(slot); err != nil || st.Size() != size {
		b.Fatalf("curl | dd wrote %v bytes (%v), want %d", st, err, size)
	}
	b.ReportMetric(float64(size)/1e6/d.Seconds(), "curl-MB/s")
}

// vmHWM is the peak resident set size of this process, in bytes.
func vmHWM(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

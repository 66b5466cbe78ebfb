package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
)

func sampleConfig() Config {
	return Config{Repository: "https://updates.example.com", Root: RootPath, CA: CAPath, Hardware: "qemu-x86_64", Channel: "stable",
		Poll: Duration(5 * time.Minute), Commit: "health", Reboot: "now", Report: "https://fleet.example.com",
		Link:      Link{Proxy: "http://proxy.example.com:3128", RateLimit: 1 << 20, Attempts: 5, RequestTimeout: Duration(time.Minute), IdleTimeout: Duration(30 * time.Second)},
		Workloads: &Workloads{Group: "demo", Containerd: "/run/containerd/containerd.sock", Namespace: "plumb", DataDir: "/data/apps"},
		Health:    []HealthCheck{{Command: "/bin/true", Timeout: Duration(10 * time.Second)}, {URL: "http://127.0.0.1:8080/", Timeout: Duration(5 * time.Second)}},
		Wake:      &Wake{Poll: Duration(time.Hour)},
	}
}

func sampleInstaller() Installer {
	return Installer{ESPSize: 64 << 20, RootSize: 512 << 20, DataSize: 256 << 20, Seed: "edge-demo/qemu-x86_64", ModTime: 1767225600,
		Bootloader: "/usr/lib/plumb/systemd-bootx64.efi", Data: "/usr/lib/plumb/data.img.zst", DataSHA256: strings.Repeat("ab", 32), DataBytes: 256 << 20,
		SecureBootDB: strings.Repeat("cd", 32)}
}

func indent(t *testing.T, v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestGolden(t *testing.T) {
	c, i := sampleConfig(), sampleInstaller()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/agent.golden.json", indent(t, c))
	testutil.Golden(t, "testdata/installer.golden.json", indent(t, i))
}

// TestPreviousRelease parses the agent.json and installer.json the
// previous release's builder wrote.
func TestPreviousRelease(t *testing.T) {
	c, err := Parse(testutil.ReadFixture(t, "testdata/prev/agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Workloads == nil || c.Link.Attempts != 5 || len(c.Health) != 2 || c.Report != "https://fleet.example.com" {
		t.Errorf("Parse(previous agent.json) = %+v", c)
	}
	i, err := ParseInstaller(testutil.ReadFixture(t, "testdata/prev/installer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if i.Seed != "edge-demo/qemu-x86_64" || i.DataBytes != 256<<20 {
		t.Errorf("ParseInstaller(previous installer.json) = %+v", i)
	}
}

func FuzzParseInstaller(f *testing.F) {
	b, _ := json.Marshal(sampleConfig())
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Parse(data); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
		if _, err := ParseInstaller(data); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	})
}

package workload

import (
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
)

func sample() *Manifest {
	return &Manifest{Containers: []Container{{Name: "web", Image: "registry.example.com/web@" + dgA, Target: "apps/demo/web.tar",
		Command: []string{"/bin/httpd", "-f"}, Env: map[string]string{"PORT": "8080"}, Mounts: []Mount{{Source: "web/html", Target: "/srv", ReadOnly: true}},
		Restart: RestartOnFailure, Health: &Health{Command: []string{"/bin/wget", "-q", "http://127.0.0.1:8080/"}, Interval: Duration(10 * time.Second), Retries: 2}}}}
}

func TestGolden(t *testing.T) {
	b, err := sample().Encode()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/workloads.golden.json", b)
}

// TestPreviousRelease reads the workloads.json the previous release wrote.
func TestPreviousRelease(t *testing.T) {
	m, err := Decode(testutil.ReadFixture(t, "testdata/prev/workloads.json"), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Containers) != 1 || m.Containers[0].Health == nil || m.Containers[0].Mounts[0].Target != "/srv" {
		t.Errorf("Decode(previous release) = %+v", m)
	}
}

// TestKeepsUnknown: a newer publisher's members survive a read and a write.
func TestKeepsUnknown(t *testing.T) {
	in := `{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","cpu_quota":"0.5"}],"policy":{"max_parallel":2}}`
	m, err := Decode([]byte(in), "demo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cpu_quota": "0.5"`, `"policy": {`, `"max_parallel": 2`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Encode(Decode(%s)) =\n%s\nlacks %s", in, b, want)
		}
	}
}

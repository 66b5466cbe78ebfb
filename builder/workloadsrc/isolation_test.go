package workloadsrc

import (
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/workload"
)

// TestIsolationOptions: the isolation options parse from YAML, survive
// the JSON round trip, and are off unless written.
func TestIsolationOptions(t *testing.T) {
	y := "containers:\n" +
		"  - name: a\n    image: r.example/x@" + dgA + "\n" +
		"    network: none\n    user: 1000\n    readonly_rootfs: true\n" +
		"  - name: b\n    image: r.example/x@" + dgA + "\n" +
		"    user: \"1000:2000\"\n    privileged: true\n    host_pid: true\n" +
		"  - name: c\n    image: r.example/x@" + dgA + "\n"
	src, err := ParseYAML("w.yaml", []byte(y), "demo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := src.Manifest.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := workload.Decode(b, "demo")
	if err != nil {
		t.Fatalf("Decode(Encode) = %v\n%s", err, b)
	}
	a, bb, c := m.Containers[0], m.Containers[1], m.Containers[2]
	if a.NetworkMode() != workload.NetworkNone || !a.ReadOnlyRootfs || a.Privileged || a.HostPID {
		t.Errorf("a = %+v, want network none, read-only rootfs, not privileged", a)
	}
	if uid, gid, ok, err := a.UserIDs(); uid != 1000 || gid != 1000 || !ok || err != nil {
		t.Errorf("a.UserIDs() = %d, %d, %v, %v; want 1000, 1000 (GID defaults to UID)", uid, gid, ok, err)
	}
	if uid, gid, ok, _ := bb.UserIDs(); uid != 1000 || gid != 2000 || !ok || !bb.Privileged || !bb.HostPID {
		t.Errorf("b = %+v (ids %d:%d), want 1000:2000, privileged, host PID", bb, uid, gid)
	}
	if c.NetworkMode() != workload.NetworkHost || c.ReadOnlyRootfs || c.Privileged || c.HostPID || c.User != "" {
		t.Errorf("c = %+v, want the defaults: host network, image's user, nothing privileged", c)
	}
	if _, _, ok, _ := c.UserIDs(); ok {
		t.Errorf("c.UserIDs(): ok with no user set")
	}
	if strings.Contains(string(b), "privileged\": false") {
		t.Errorf("JSON writes unset options:\n%s", b)
	}
}

func TestIsolationYAMLErrors(t *testing.T) {
	img := "image: r.example/x@" + dgA
	for _, tt := range []struct{ yaml, want string }{
		{"containers:\n  - name: a\n    " + img + "\n    network: bridge\n", `w.yaml:4: containers[0].network: expected host or none, got "bridge"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: root\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "root"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: \"1000:\"\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "1000:"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: 4294967295\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "4294967295"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: \"+1\"\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "+1"`},
		{"containers:\n  - name: a\n    " + img + "\n    privileged: yes\n", `w.yaml:4: containers[0].privileged: expected true or false, got "yes"`},
		{"containers:\n  - name: a\n    " + img + "\n    host_pid: 1\n", `w.yaml:4: containers[0].host_pid: expected true or false, got number 1`},
		{"containers:\n  - name: a\n    " + img + "\n    readonly_rootfs: [true]\n", `w.yaml:4: containers[0].readonly_rootfs: expected true or false, got a list`},
	} {
		_, err := ParseYAML("w.yaml", []byte(tt.yaml), "demo")
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseYAML(%q) = %v,\nwant %s", tt.yaml, err, tt.want)
		}
	}
}

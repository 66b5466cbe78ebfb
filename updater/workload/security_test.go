package workload

import (
	"strings"
	"testing"
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
	m, err := Decode(b, "demo")
	if err != nil {
		t.Fatalf("Decode(Encode) = %v\n%s", err, b)
	}
	a, bb, c := m.Containers[0], m.Containers[1], m.Containers[2]
	if a.NetworkMode() != NetworkNone || !a.ReadOnlyRootfs || a.Privileged || a.HostPID {
		t.Errorf("a = %+v, want network none, read-only rootfs, not privileged", a)
	}
	if uid, gid, ok, err := a.UserIDs(); uid != 1000 || gid != 1000 || !ok || err != nil {
		t.Errorf("a.UserIDs() = %d, %d, %v, %v; want 1000, 1000 (GID defaults to UID)", uid, gid, ok, err)
	}
	if uid, gid, ok, _ := bb.UserIDs(); uid != 1000 || gid != 2000 || !ok || !bb.Privileged || !bb.HostPID {
		t.Errorf("b = %+v (ids %d:%d), want 1000:2000, privileged, host PID", bb, uid, gid)
	}
	if c.NetworkMode() != NetworkHost || c.ReadOnlyRootfs || c.Privileged || c.HostPID || c.User != "" {
		t.Errorf("c = %+v, want the defaults: host network, image's user, nothing privileged", c)
	}
	if _, _, ok, _ := c.UserIDs(); ok {
		t.Errorf("c.UserIDs(): ok with no user set")
	}
	if strings.Contains(string(b), "privileged\": false") {
		t.Errorf("JSON writes unset options:\n%s", b)
	}
}

func TestIsolationErrors(t *testing.T) {
	img := "image: r.example/x@" + dgA
	for _, tt := range []struct{ yaml, want string }{
		{"containers:\n  - name: a\n    " + img + "\n    network: bridge\n", `w.yaml:4: containers[0].network: expected host or none, got "bridge"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: root\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "root"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: \"1000:\"\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "1000:"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: 4294967295\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "4294967295"`},
		{"containers:\n  - name: a\n    " + img + "\n    user: \"+1\"\n", `w.yaml:4: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "+1"`},
		{"containers:\n  - name: a\n    " + img + "\n    privileged: yes\n", `w.yaml:4: containers[0].privileged: expected true or false, got "yes"`},
		{"containers:\n  - name: a\n    " + img + "\n    host_pid: 1\n", `w.yaml:4: containers[0].host_pid: expected true or false, got 1`},
		{"containers:\n  - name: a\n    " + img + "\n    readonly_rootfs: [true]\n", `w.yaml:4: containers[0].readonly_rootfs: expected true or false, got a list`},
	} {
		_, err := ParseYAML("w.yaml", []byte(tt.yaml), "demo")
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseYAML(%q) = %v,\nwant %s", tt.yaml, err, tt.want)
		}
	}
	for _, tt := range []struct{ json, want string }{
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","network":"container:b"}]}`, `workloads.json: containers[0].network: expected host or none, got "container:b"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","privileged":"true"}]}`, `workloads.json: json: cannot unmarshal string into Go struct field Container.containers.privileged of type bool`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","mounts":[{"source":"a\n\u0000","target":"/m"}]}]}`, `workloads.json: containers[0].mounts[0].source: expected a relative path inside the data partition's apps directory, got "a\n\x00"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","mounts":[{"source":"a","target":"/m\t"}]}]}`, `workloads.json: containers[0].mounts[0].target: expected an absolute path in the container other than /, got "/m\t"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","user":"-1"}]}`, `workloads.json: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "-1"`},
	} {
		if _, err := Decode([]byte(tt.json), "demo"); err == nil || err.Error() != tt.want {
			t.Errorf("Decode(%s) = %v,\nwant %s", tt.json, err, tt.want)
		}
	}
}

package workload

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestIsolationJSON: the isolation options survive the JSON round trip
// and are off unless written.
func TestIsolationJSON(t *testing.T) {
	in := `{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","network":"none","user":"1000","readonly_rootfs":true},` +
		`{"name":"b","image":"r.example/x@` + dgA + `","user":"1000:2000","privileged":true,"host_pid":true},` +
		`{"name":"c","image":"r.example/x@` + dgA + `"}]}`
	m, err := Decode([]byte(in), "demo")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if m, err = Decode(b, "demo"); err != nil {
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
	for _, tt := range []struct{ json, want string }{
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","network":"container:b"}]}`, `workloads.json: containers[0].network: expected host or none, got "container:b"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","privileged":"true"}]}`, `workloads.json: json: cannot unmarshal string into Go struct field plain.containers.privileged of type bool`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","mounts":[{"source":"a\n\u0000","target":"/m"}]}]}`, `workloads.json: containers[0].mounts[0].source: expected a relative path inside the data partition's apps directory, got "a\n\x00"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","mounts":[{"source":"a","target":"/m\t"}]}]}`, `workloads.json: containers[0].mounts[0].target: expected an absolute path in the container other than /, got "/m\t"`},
		{`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","user":"-1"}]}`, `workloads.json: containers[0].user: expected a numeric user id like "1000" or "1000:1000" (at most 4294967294), got "-1"`},
	} {
		if _, err := Decode([]byte(tt.json), "demo"); err == nil || err.Error() != tt.want {
			t.Errorf("Decode(%s) = %v,\nwant %s", tt.json, err, tt.want)
		}
	}
}

// FuzzDecode: no repository JSON panics the device; an error is
// one line; what decodes keeps the contract and survives a round trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","target":"apps/demo/a.tar","health":{"command":["true"],"interval":"5s"}}]}`))
	f.Add([]byte(`{"containers":[{"name":"a","image":"r.example/x@` + dgA + `","mounts":[{"source":"d/x","target":"/m"}],"network":"none","user":"1:2","readonly_rootfs":true,"privileged":true,"host_pid":true}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, "demo")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		checkContract(t, m)
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Decode(b, "demo")
		if err != nil {
			t.Fatalf("Decode(Encode(Decode)) = %v\n%s", err, b)
		}
		if b2, _ := m2.Encode(); !bytes.Equal(b, b2) {
			t.Errorf("round trip differs:\n%s\n%s", b, b2)
		}
	})
}

// checkContract is what the device relies on in a manifest that
// validated: mount sources stay below the group's directory (relative,
// clean, no ".." element, no control character), the network is host or
// none, the user parses, names are unique.
func checkContract(t *testing.T, m *Manifest) {
	t.Helper()
	names := map[string]bool{}
	for _, c := range m.Containers {
		if names[c.Name] {
			t.Errorf("name %q twice", c.Name)
		}
		names[c.Name] = true
		for _, mt := range c.Mounts {
			for _, el := range strings.Split(mt.Source, "/") {
				if el == ".." || el == "" {
					t.Errorf("mount source %q: element %q", mt.Source, el)
				}
			}
			if filepath.IsAbs(mt.Source) || filepath.Clean(mt.Source) != mt.Source {
				t.Errorf("mount source %q is not relative and clean", mt.Source)
			}
			if hasControl(mt.Source) || hasControl(mt.Target) {
				t.Errorf("mount %q -> %q holds a control character", mt.Source, mt.Target)
			}
		}
		if n := c.NetworkMode(); n != NetworkHost && n != NetworkNone {
			t.Errorf("network %q", n)
		}
		if _, _, _, err := c.UserIDs(); err != nil {
			t.Errorf("user %q validated but does not parse: %v", c.User, err)
		}
	}
}

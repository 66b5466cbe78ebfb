package workloadsrc

import (
	"bytes"
	"errors"
	"github.com/plumb-os/plumb/format/workload"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dgA = "sha256:" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

const goodYAML = `# the demo group's workloads
containers:
  - name: web
    image: registry.example.com/web@` + dgA + `
    archive: images/web.tar
    command: [/bin/httpd, -f, -p, "8080"]
    env:
      MODE: production
      PORT: "8080"
    mounts:
      - {source: web/html, target: /srv, readonly: true}
    restart: on-failure
    health:
      command: [/bin/wget, -q, -O-, http://127.0.0.1:8080/]
      interval: 10s
      retries: 2
  - name: db
    image: registry.example.com/db@` + dgA + `
`

func TestParseYAML(t *testing.T) {
	src, err := ParseYAML("/srv/apps/w.yaml", []byte(goodYAML), "demo")
	if err != nil {
		t.Fatal(err)
	}
	m := src.Manifest
	if len(m.Containers) != 2 {
		t.Fatalf("containers = %d, want 2", len(m.Containers))
	}
	web := m.Containers[0]
	if web.Target != "apps/demo/web.tar" || src.Archives[0] != "/srv/apps/images/web.tar" {
		t.Errorf("web target %q archive %q, want apps/demo/web.tar from /srv/apps/images/web.tar", web.Target, src.Archives[0])
	}
	if web.Env["PORT"] != "8080" || web.Mounts[0] != (workload.Mount{Source: "web/html", Target: "/srv", ReadOnly: true}) || web.RestartPolicy() != workload.RestartOnFailure {
		t.Errorf("web = %+v", web)
	}
	if web.Health == nil || web.Health.Retries != 2 || web.Health.Interval.String() != "10s" {
		t.Errorf("web health = %+v", web.Health)
	}
	if m.Containers[1].RestartPolicy() != workload.RestartAlways || m.Containers[1].Target != "" {
		t.Errorf("db = %+v, want restart always, pulled from its registry", m.Containers[1])
	}
	// JSON round trip.
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := workload.Decode(b, "demo")
	if err != nil {
		t.Fatalf("Decode(Encode) = %v\n%s", err, b)
	}
	b2, _ := back.Encode()
	if !bytes.Equal(b, b2) {
		t.Errorf("round trip differs:\n%s\n%s", b, b2)
	}
	if web.SpecHash() == m.Containers[1].SpecHash() {
		t.Errorf("two different containers share a spec hash")
	}
	w2 := web
	w2.Restart, w2.Health = workload.RestartNever, nil
	if w2.SpecHash() != web.SpecHash() {
		t.Errorf("restart policy and health changed the spec hash: they do not need a new container")
	}
}

func TestParseYAMLErrors(t *testing.T) {
	img := "image: r.example/x@" + dgA
	tests := []struct{ yaml, want string }{
		{"containers:\n  - name: a\n    " + img + "\n    bogus: 1\n", `w.yaml:4: containers[0]: unknown key "bogus" (expected one of: archive, command, env, health, image, mounts, name, restart, target)`},
		{"containers:\n  - name: a\n    image: r.example/x:latest\n", `w.yaml:3: containers[0].image: expected an image reference pinned by digest like "example.com/app@sha256:<64 hex>", got "r.example/x:latest"`},
		{"containers:\n  - name: a\n    " + img + "\n  - name: a\n    " + img + "\n", `w.yaml:4: containers[1].name: expected a unique name, got "a" again (first in containers[0])`},
		{"containers:\n  - name: a\n    " + img + "\n    restart: sometimes\n", `w.yaml:4: containers[0].restart: expected always, on-failure or never, got "sometimes"`},
		{"containers:\n  - name: a\n    " + img + "\n    mounts:\n      - {source: ../etc, target: /x}\n", `w.yaml:5: containers[0].mounts[0].source: expected a relative path inside the data partition's apps directory, got "../etc"`},
		{"containers:\n  - name: a\n    " + img + "\n    target: apps/other/a.tar\n", `w.yaml:4: containers[0].target: expected a target of group "demo" (apps/demo/…), got "apps/other/a.tar"`},
		{"containers:\n  - name: a\n    " + img + "\n    command: /bin/sh\n", `w.yaml:4: containers[0].command: expected a list of strings like ["/bin/app", "--flag"], got "/bin/sh"`},
		{"containers:\n  - name: a\n    " + img + "\n    health: {command: [x], interval: soon}\n", `w.yaml:4: containers[0].health.interval: expected a duration like "30s", got "soon"`},
		{"containers:\n\t- name: a\n", `w.yaml:2: invalid YAML: found character that cannot start any token`},
		{"containers: {}\n", `w.yaml:1: containers: expected a list, got a mapping`},
	}
	for _, tt := range tests {
		_, err := ParseYAML("w.yaml", []byte(tt.yaml), "demo")
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseYAML(%q) = %v,\nwant %s", tt.yaml, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q: want one line", err)
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Errorf("error %v: want *Error", err)
		}
	}
}

func TestArchiveImages(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.tar")
	os.WriteFile(p, []byte("not a tar"), 0o644)
	if _, err := ArchiveImages(p); err == nil {
		t.Errorf("ArchiveImages(garbage) = nil error")
	}
}

// FuzzParseYAML: no input panics; what parses validates and survives a
// JSON round trip.
func FuzzParseYAML(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("containers:\n  - name: a\n    image: r/x@" + dgA + "\n    env: {A: b}\n"))
	f.Add([]byte("containers: [{name: a, image: x, mounts: [{source: a, target: /b}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := ParseYAML("f.yaml", data, "demo")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		b, err := src.Manifest.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := workload.Decode(b, "demo"); err != nil {
			t.Errorf("Decode(Encode(ParseYAML)) = %v\n%s", err, b)
		}
	})
}

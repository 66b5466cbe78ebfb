package recipe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var headerRE = regexp.MustCompile(`(?m)^# (want|line): (.*)$`)

// TestBad loads every testdata/bad/*.yaml and checks that it fails with one
// line that starts with "FILE:LINE: " from its "# line:" header and contains
// its "# want:" header.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 18 {
		t.Fatalf("found %d bad recipes, want at least 18", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			hdr := map[string]string{}
			for _, m := range headerRE.FindAllStringSubmatch(string(data), -1) {
				hdr[m[1]] = m[2]
			}
			want, lineText := hdr["want"], hdr["line"]
			line, convErr := strconv.Atoi(lineText)
			if want == "" || convErr != nil || line < 1 {
				t.Fatalf("%s: needs headers \"# want: <substring>\" and \"# line: <n>\", got want=%q line=%q", file, want, lineText)
			}
			r, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want error containing %q", file, r, want)
			}
			got := err.Error()
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("Load(%s) error spans lines: %q", file, got)
			}
			if prefix := fmt.Sprintf("%s:%d: ", file, line); !strings.HasPrefix(got, prefix) {
				t.Errorf("Load(%s) = %q, want prefix %q", file, got, prefix)
			}
			if !strings.Contains(got, want) {
				t.Errorf("Load(%s) = %q, want it to contain %q", file, got, want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Load(%s): errors.Is(err, ErrInvalid) = false, want true", file)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != file || e.Line != line {
				t.Errorf("Load(%s): error %#v, want *Error with File %q Line %d", file, err, file, line)
			}
		})
	}
}

func TestLoadGoodFull(t *testing.T) {
	r, err := Load("testdata/good/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	dir, err := filepath.Abs("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	content := "plumb\n"
	empty := ""
	want := &Recipe{
		Name:     "qemu-x86_64-demo",
		Version:  "1.2.0-rc.1+build.7",
		Hardware: "qemu-x86_64",
		Channel:  "beta",
		Epoch:    1700000000,
		Kernel: Kernel{
			Package: "linux-image-6.1.0-56-cloud-amd64",
			Cmdline: "console=ttyS0 panic=5",
			Modules: []string{"virtio_blk", "squashfs"},
		},
		Rootfs: []Source{
			{Deb: Packages{"busybox-static", "ca-certificates"}},
			{Dir: filepath.Join(dir, "overlay")},
			{Tar: filepath.Join(dir, "extra.tar")},
			{OCI: filepath.Join(dir, "image")},
		},
		Files: []File{
			{Path: "/etc/hostname", Mode: 0o600, Content: &content},
			{Path: "/sbin/init", Mode: 0o755, GID: 10, Source: filepath.Join(dir, "files/init")},
			{Path: "/bin/sh", Mode: 0o777, Symlink: "busybox"},
			{Path: "/data", Mode: 0o755, Dir: true},
			{Path: "/etc/empty", Mode: 0o644, Content: &empty},
		},
		Agent: &Agent{
			Repository: "https://10.0.2.100/",
			Root:       filepath.Join(dir, "keys/root.json"),
			CA:         filepath.Join(dir, "keys/ca.pem"),
			Poll:       30 * time.Second,
			Commit:     CommitAttested,
			Health: []HealthCheck{
				{Command: "/bin/true", Timeout: DefaultHealthTimeout},
				{File: "/data/ok", Timeout: 2 * time.Minute},
				{URL: "http://127.0.0.1:8080/healthz", Timeout: 5 * time.Second},
			},
		},
		Partitions:  Partitions{ESP: 64 * MiB, Root: GiB, Data: 512 * MiB},
		Compression: Compression{Algorithm: "zstd", Level: 19, BlockSize: 256 * KiB},
		Origin:      "testdata/good/full.yaml",
	}
	compareRecipe(t, r, want)
	gotKinds := []string{}
	for _, s := range r.Rootfs {
		gotKinds = append(gotKinds, s.Kind())
	}
	for _, f := range r.Files {
		gotKinds = append(gotKinds, f.Kind())
	}
	for _, h := range r.Agent.Health {
		gotKinds = append(gotKinds, h.Kind())
	}
	wantKinds := []string{"deb", "dir", "tar", "oci", "content", "source", "symlink", "dir", "content", "command", "file", "url"}
	if !reflect.DeepEqual(gotKinds, wantKinds) {
		t.Errorf("kinds = %v, want %v", gotKinds, wantKinds)
	}
}

func TestLoadGoodMinimalDefaults(t *testing.T) {
	r, err := Load("testdata/good/minimal.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Recipe{
		Name:     "tiny",
		Version:  "1",
		Hardware: "qemu-x86_64",
		Channel:  "stable",
		Kernel: Kernel{
			Package: "linux-image-6.1.0-56-cloud-amd64",
			Modules: DefaultModules,
		},
		Rootfs:      []Source{{Deb: Packages{"busybox-static"}}},
		Partitions:  Partitions{ESP: DefaultESP, Root: DefaultRoot, Data: DefaultData},
		Compression: Compression{Algorithm: "zstd", Level: 15, BlockSize: 128 * KiB},
		Origin:      "testdata/good/minimal.yaml",
	}
	compareRecipe(t, r, want)
}

// compareRecipe compares the exported fields of got and want.
func compareRecipe(t *testing.T, got, want *Recipe) {
	t.Helper()
	g, w := *got, *want
	g.lines, g.nulls = nil, nil
	if !reflect.DeepEqual(g, w) {
		gv, wv := reflect.ValueOf(g), reflect.ValueOf(w)
		for i := range gv.NumField() {
			if !gv.Type().Field(i).IsExported() {
				continue
			}
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s = %+v, want %+v", gv.Type().Field(i).Name, deref(gv.Field(i)), deref(wv.Field(i)))
			}
		}
	}
}

func deref(v reflect.Value) any {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		return v.Elem().Interface()
	}
	return v.Interface()
}

// TestParseNoBaseDir checks that Parse without a base directory keeps host
// paths as written and does not look at the file system.
func TestParseNoBaseDir(t *testing.T) {
	data := []byte(`name: a
version: 1.0.0
hardware: b
kernel: {file: ./vmlinuz, modules_dir: ./modules/6.1.0}
rootfs: [{dir: ./does-not-exist}]
files:
  - {path: /etc/x, mode: "0000", content: ""}
`)
	r, err := Parse("mem.yaml", data, "")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := r.Kernel.File, "./vmlinuz"; got != want {
		t.Errorf("Kernel.File = %q, want %q", got, want)
	}
	if got, want := r.Rootfs[0].Dir, "./does-not-exist"; got != want {
		t.Errorf("Rootfs[0].Dir = %q, want %q", got, want)
	}
	if got, want := r.Files[0].Mode, Mode(0); got != want {
		t.Errorf("explicit mode 0000: Files[0].Mode = %v, want %v", got, want)
	}
}

// TestParseErrors covers error lines and field paths for inline input.
func TestParseErrors(t *testing.T) {
	head := "name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs: [{deb: busybox}]\n"
	tests := []struct {
		in   string
		want string
	}{
		{head + "partitions:\n  root: lots\n", `x.yaml:7: partitions.root: expected a size like "2GiB", got "lots"`},
		{head + "partitions: {root: 4MiB}\n", `x.yaml:6: partitions.root: expected at least 8MiB, got 4MiB`},
		{head + "epoch: -1\n", `x.yaml:6: epoch: expected seconds since 1970 (0 or more), got -1`},
		{head + "epoch: 1.5\n", `x.yaml:6: epoch: expected an integer, got number 1.5`},
		{head + "kernel: {}\n", `x.yaml:6: duplicate key "kernel" (first at line 4)`},
		{head + "agent:\n  root: ./r.json\n", `x.yaml:6: agent.repository: required: the repository's base URL, like https://updates.example.com/`},
		{head + "agent:\n  repository: https://x/\n  root: r\n  health:\n    - {file: data/ok}\n", `x.yaml:10: agent.health[0].file: expected an absolute path in the image, like /etc/hostname, got "data/ok"`},
		{head + "agent:\n  repository: https://x/\n  root: r\n  health:\n    - timeout: 5s\n", `x.yaml:10: agent.health[0]: empty health check: expected exactly one of command, file, url`},
		{head + "agent:\n  repository: https://x/\n  root: r\n  group: Canary\n", `x.yaml:9: agent.group: expected lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, got "Canary"`},
		{head + "agent:\n  repository: https://x/\n  root: r\n  report: \"off\"\n  wake: {}\n", `x.yaml:10: agent.wake: expected the fleet service: wake needs report not "off"`},
		{head + "agent:\n  repository: https://x/\n  root: r\n  wake: {poll: 1m}\n", `x.yaml:9: agent.wake.poll: expected 0 (default 1h0m0s) or at least poll (5m0s), got 1m0s`},
		{head + "files:\n  - path: /a\n    content: [x]\n", `x.yaml:8: files[0].content: expected a string, got a list`},
		{head + "files:\n  - path: /a\n    dir: yes\n", `x.yaml:8: files[0].dir: expected true or false, got "yes"`},
		{head + "files:\n  - path: /a/./b\n    dir: true\n", `x.yaml:7: files[0].path: expected a clean path like "/a/b", got "/a/./b"`},
		{head + "kernel2:\n  x: \"a\\nb\"\n", `x.yaml:6: unknown key "kernel2" (expected one of: name, version, hardware, channel, epoch, kernel, rootfs, files, agent, partitions, compression, boot)`},
		{head + "\"a\\nb\": 1\n", `x.yaml:6: unknown key "a\nb" (expected one of: name, version, hardware, channel, epoch, kernel, rootfs, files, agent, partitions, compression, boot)`},
		{"name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64, modules: [virtio-blk, virtio_blk]}\nrootfs: [{deb: busybox}]\n", `x.yaml:4: kernel.modules[1]: module "virtio_blk" is listed twice`},
		{"name: a\n  b: c\n", `x.yaml:2: invalid YAML: mapping values are not allowed in this context`},
		{"name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs:\n  - deb:\n      - busybox\n      - [x]\n", `x.yaml:8: rootfs[0].deb[1]: expected a package name, got a list`},
		{"name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64}\nrootfs:\n  - deb: 5\n", `x.yaml:6: rootfs[0].deb: expected a package name or a list of them, got number 5`},
		{head + "files:\n  - path: /a\n    content: \"" + strings.Repeat("x", 100) + "\"\n    symlink: [y]\n", `x.yaml:9: files[0].symlink: expected a string, got a list`},
		{head + "channel: \"" + strings.Repeat("x", 70) + "\"\n", `x.yaml:6: channel: expected at most 64 characters, got 70`},
		{head + "kernel: {package: linux-image-amd64, cmdline: \"a\\nb\"}\n", `x.yaml:6: duplicate key "kernel" (first at line 4)`},
		{"name: a\nversion: 1.0.0\nhardware: b\nkernel: {package: linux-image-amd64, cmdline: \"a\\nb\"}\nrootfs: [{deb: busybox}]\n", `x.yaml:4: kernel.cmdline: expected one line without control characters, got "a\nb"`},
		{head + "# a comment\n", `<nil>`},
	}
	for _, tt := range tests {
		_, err := Parse("x.yaml", []byte(tt.in), "")
		got := "<nil>"
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Parse(%q)\n got: %s\nwant: %s", tt.in, got, tt.want)
		}
	}
}

// TestValidateGoRecipe checks Validate on a recipe built in Go: no file or
// line, field path and message only.
func TestValidateGoRecipe(t *testing.T) {
	r := &Recipe{Name: "a", Version: "1", Hardware: "b", Kernel: Kernel{Package: "linux-image-amd64"}, Rootfs: []Source{{Deb: Packages{"busybox"}}}}
	r.SetDefaults()
	if err := r.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	r.Compression.Level = 0
	r.Files = []File{{Path: "/x"}}
	got := fmt.Sprint(r.Validate())
	want := "files[0]: empty file entry: expected exactly one of content, source, symlink, dir"
	if got != want {
		t.Errorf("Validate() = %q, want %q", got, want)
	}
	k := &Kernel{}
	if got, want := fmt.Sprint(k.Validate()), "empty kernel: expected exactly one of package, deb, file"; got != want {
		t.Errorf("Kernel{}.Validate() = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	if err == nil || !errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(%s) = %v, want ErrInvalid wrapping ErrNotExist", path, err)
	}
	if want := path + ": cannot read recipe: no such file or directory: " + path; err.Error() != want {
		t.Errorf("Load(%s) = %q, want %q", path, err, want)
	}
}

// TestRecipesDir loads every recipe shipped in recipes/: they must stay
// valid as the format changes.
func TestRecipesDir(t *testing.T) {
	files, err := filepath.Glob("../../recipes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recipes in ../../recipes: the repository ships recipes/*.yaml")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("Load(%s): %v", f, err)
		}
	}
}

// TestReadmeExample parses the complete example in recipes/README.md, so
// the reference cannot drift from the code.
func TestReadmeExample(t *testing.T) {
	data, err := os.ReadFile("../../recipes/README.md")
	if err != nil {
		t.Fatalf("reading the format reference: %v", err)
	}
	const start, end = "<!-- example:begin -->\n```yaml\n", "```\n<!-- example:end -->"
	_, rest, ok := strings.Cut(string(data), start)
	example, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("recipes/README.md has no example between %q and %q", start, end)
	}
	r, err := Parse("README.md example", []byte(example), "")
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if r.Agent == nil || len(r.Files) == 0 || len(r.Rootfs) < 4 {
		t.Errorf("README example should show every section (agent, files, all four source kinds); got %+v", r)
	}
}

// TestParseNullsAndNumbers checks that empty values act like absent keys
// and that numbers in string fields keep their text.
func TestParseNullsAndNumbers(t *testing.T) {
	data := []byte(`name: a
version: 1.10
hardware: b
channel:
kernel:
  package: linux-image-amd64
  modules:
rootfs:
  - deb: busybox
files:
  - path: /etc/x
    mode:
    content: hi
agent:
partitions:
  esp:
compression: {level: ~}
`)
	r, err := Parse("n.yaml", data, "")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"Version", r.Version, "1.10"},
		{"Channel", r.Channel, "stable"},
		{"Kernel.Modules", r.Kernel.Modules, DefaultModules},
		{"Files[0].Mode", r.Files[0].Mode, Mode(0o644)},
		{"Agent", r.Agent, (*Agent)(nil)},
		{"Partitions.ESP", r.Partitions.ESP, DefaultESP},
		{"Compression.Level", r.Compression.Level, DefaultLevel},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestPinnedDebs: rootfs packages may be pinned to a version (name=version).
func TestPinnedDebs(t *testing.T) {
	data := []byte(`name: a
version: 1.0.0
hardware: b
kernel: {package: linux-image-6.1.0-50-cloud-amd64}
rootfs: [{deb: [busybox-static, "openssl=3.0.20-1~deb12u2", "zlib1g=1:1.2.13.dfsg-1"]}]
`)
	r, err := Parse("mem.yaml", data, "")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := r.Rootfs[0].Deb; len(got) != 3 || got[2] != "zlib1g=1:1.2.13.dfsg-1" {
		t.Errorf("Rootfs[0].Deb = %q, want the three specs as written", got)
	}
}

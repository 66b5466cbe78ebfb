package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/fstree"
)

// allKinds is an archive with every entry type AddTar handles.
var allKinds = []entry{
	{name: "./", typ: tar.TypeDir, mode: 0o755, mtime: 100},
	{name: "./usr/", typ: tar.TypeDir, mode: 0o755, mtime: 101},
	{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755, mtime: 102},
	{name: "./usr/bin/su", typ: tar.TypeReg, mode: 0o4755, body: "setuid", mtime: 103},
	{name: "./usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", mtime: 104,
		xattrs: map[string]string{"security.capability": "cap"}},
	{name: "./usr/bin/ping2", typ: tar.TypeLink, link: "./usr/bin/ping"},
	{name: "./usr/bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "/bin/busybox", mtime: 105},
	{name: "./dev/", typ: tar.TypeDir, mode: 0o755, mtime: 106},
	{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3, mtime: 107},
	{name: "./dev/sda", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 8, minor: 0, mtime: 108},
	{name: "./dev/initctl", typ: tar.TypeFifo, mode: 0o600, mtime: 109},
	{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777, mtime: 110},
	{name: "./home/u/.wh.keep", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, body: "not a whiteout", mtime: 111},
}

var allKindsWant = []string{
	`dev drwxr-xr-x 0:0 106`,
	`dev/initctl prw------- 0:0 109`,
	`dev/null Dcrw-rw-rw- 0:0 107 dev 1:3`,
	`dev/sda Drw-rw---- 0:6 108 dev 8:0`,
	`home drwxr-xr-x 0:0 111`,
	`home/u drwxr-xr-x 0:0 111`,
	`home/u/.wh.keep -rw-r----- 1000:1000 111 14 "not a whiteout"`,
	`tmp dtrwxrwxrwx 0:0 110`,
	`usr drwxr-xr-x 0:0 101`,
	`usr/bin drwxr-xr-x 0:0 102`,
	`usr/bin/ping -rwxr-xr-x 0:0 104 4 "ping" xattr security.capability=cap`,
	`usr/bin/ping2 -rwxr-xr-x 0:0 104 4 "ping" xattr security.capability=cap`,
	`usr/bin/sh Lrwxrwxrwx 0:0 105 -> /bin/busybox`,
	`usr/bin/su urwxr-xr-x 0:0 103 6 "setuid"`,
}

// compressWith runs a real compressor over data.
func compressWith(t *testing.T, data []byte, tool, pkg string) []byte {
	t.Helper()
	requireTool(t, tool, pkg)
	cmd := exec.CommandContext(t.Context(), tool, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out
}

func TestAddTarCompressions(t *testing.T) {
	plain := makeTar(t, allKinds)
	tests := []struct {
		name, tool, pkg string
	}{
		{"plain", "", ""},
		{"gzip", "gzip", "gzip"},
		{"xz", "xz", "xz-utils"},
		{"zstd", "zstd", "zstd"},
		{"bzip2", "bzip2", "bzip2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := plain
			if tt.tool != "" {
				data = compressWith(t, plain, tt.tool, tt.pkg)
			}
			tr, s := newTreeStore(t)
			if err := AddTar(t.Context(), tr, s, bytes.NewReader(data), "/"); err != nil {
				t.Fatalf("AddTar: %v", err)
			}
			got := describe(t, tr)
			if d := diffLines(got, allKindsWant); d != "" {
				t.Errorf("tree differs:%s", d)
			}
			if root := tr.Get("/"); root.ModTime != 100 {
				t.Errorf("root mtime = %d, want 100 (from the ./ entry)", root.ModTime)
			}
			if tr.Get("usr/bin/ping") != tr.Get("usr/bin/ping2") {
				t.Errorf("hard link usr/bin/ping2 is not the same node as usr/bin/ping")
			}
		})
	}
}

func TestAddTarSemantics(t *testing.T) {
	file := func(name, body string) entry {
		return entry{name: name, typ: tar.TypeReg, body: body}
	}
	dir := func(name string, mode int64, mtime int64) entry {
		return entry{name: name, typ: tar.TypeDir, mode: mode, mtime: mtime}
	}
	link := func(name, target string) entry {
		return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
	}
	tests := []struct {
		name    string
		dest    string
		entries []entry
		want    []string // full tree; nil when wantErr is set
		wantErr string
	}{
		{
			name:    "dir entry over existing dir keeps children, takes metadata",
			entries: []entry{dir("d/", 0o755, 1), file("d/f", "x"), dir("d/", 0o700, 2)},
			want:    []string{`d drwx------ 0:0 2`, `d/f -rw-r--r-- 0:0 0 1 "x"`},
		},
		{
			name:    "file replaces dir and its contents",
			entries: []entry{dir("d/", 0o755, 1), file("d/f", "x"), file("d", "now a file")},
			want:    []string{`d -rw-r--r-- 0:0 0 10 "now a file"`},
		},
		{
			name:    "later file replaces earlier",
			entries: []entry{file("f", "one"), file("f", "two")},
			want:    []string{`f -rw-r--r-- 0:0 0 3 "two"`},
		},
		{
			name:    "dir entry replaces symlink (tar semantics)",
			entries: []entry{dir("usr/", 0o755, 0), link("bin", "usr"), dir("bin/", 0o755, 0)},
			want:    []string{`bin drwxr-xr-x 0:0 0`, `usr drwxr-xr-x 0:0 0`},
		},
		{
			name:    "symlink parent resolved inside the tree",
			entries: []entry{dir("usr/bin/", 0o755, 0), link("bin", "usr/bin"), file("bin/sh", "sh")},
			want: []string{`bin Lrwxrwxrwx 0:0 0 -> usr/bin`, `usr drwxr-xr-x 0:0 0`,
				`usr/bin drwxr-xr-x 0:0 0`, `usr/bin/sh -rw-r--r-- 0:0 0 2 "sh"`},
		},
		{
			name:    "absolute symlink parent stays in the tree",
			entries: []entry{link("evil", "/etc"), file("evil/passwd", "pw")},
			want: []string{`etc drwxr-xr-x 0:0 0`, `etc/passwd -rw-r--r-- 0:0 0 2 "pw"`,
				`evil Lrwxrwxrwx 0:0 0 -> /etc`},
		},
		{
			name:    "dot-dot symlink parent stops at the root",
			entries: []entry{dir("a/b/", 0o755, 0), link("a/b/up", "../../../../.."), file("a/b/up/x", "x")},
			want: []string{`a drwxr-xr-x 0:0 0`, `a/b drwxr-xr-x 0:0 0`,
				`a/b/up Lrwxrwxrwx 0:0 0 -> ../../../../..`, `x -rw-r--r-- 0:0 0 1 "x"`},
		},
		{
			name: "symlinks resolve relative to dest's tree, entries land under dest",
			dest: "/opt/app",
			entries: []entry{file("./bin/tool", "t"), link("./etc", "/etc"),
				file("./etc/app.conf", "c")},
			want: []string{`etc drwxr-xr-x 0:0 0`, `etc/app.conf -rw-r--r-- 0:0 0 1 "c"`,
				`opt drwxr-xr-x 0:0 0`, `opt/app drwxr-xr-x 0:0 0`,
				`opt/app/bin drwxr-xr-x 0:0 0`, `opt/app/bin/tool -rw-r--r-- 0:0 0 1 "t"`,
				`opt/app/etc Lrwxrwxrwx 0:0 0 -> /etc`},
		},
		{
			name:    "hard link shares content and metadata",
			entries: []entry{{name: "a", typ: tar.TypeReg, mode: 0o600, body: "same"}, {name: "b", typ: tar.TypeLink, link: "a"}},
			want:    []string{`a -rw------- 0:0 0 4 "same"`, `b -rw------- 0:0 0 4 "same"`},
		},
		{
			name:    "whiteout names are plain files in a tar",
			entries: []entry{file("x", "x"), file(".wh.x", "w"), file("d/.wh..wh..opq", "")},
			want: []string{`.wh.x -rw-r--r-- 0:0 0 1 "w"`, `d drwxr-xr-x 0:0 0`,
				`d/.wh..wh..opq -rw-r--r-- 0:0 0 0 ""`, `x -rw-r--r-- 0:0 0 1 "x"`},
		},
		{
			name:    "escaping path refused",
			entries: []entry{file("../x", "x")},
			wantErr: `adding tar at /: tar entry "../x": path escapes the tree`,
		},
		{
			name:    "escaping path in the middle refused",
			entries: []entry{file("./a/../../x", "x")},
			wantErr: `adding tar at /: tar entry "./a/../../x": path escapes the tree`,
		},
		{
			name:    "escaping hard link target refused",
			entries: []entry{{name: "x", typ: tar.TypeLink, link: "../../etc/shadow"}},
			wantErr: `adding tar at /: tar entry "x": hard link target "../../etc/shadow": path escapes the tree`,
		},
		{
			name:    "hard link to a missing file",
			entries: []entry{{name: "x", typ: tar.TypeLink, link: "nope"}},
			wantErr: `adding tar at /: tar entry "x": link x -> nope: nope does not exist`,
		},
		{
			name:    "symlink loop",
			entries: []entry{link("a", "b"), link("b", "a"), file("a/x", "x")},
			wantErr: `adding tar at /: tar entry "a/x": a: too many levels of symbolic links`,
		},
		{
			name:    "parent is a regular file",
			entries: []entry{file("f", "x"), file("f/g", "y")},
			wantErr: `adding tar at /: tar entry "f/g": f: f is not a directory`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, s := newTreeStore(t)
			dest := tt.dest
			if dest == "" {
				dest = "/"
			}
			err := AddTar(t.Context(), tr, s, bytes.NewReader(makeTar(t, tt.entries)), dest)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("AddTar error = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "escapes") && !errors.Is(err, fstree.ErrEscapes) {
					t.Errorf("error %v does not wrap fstree.ErrEscapes", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AddTar: %v", err)
			}
			if d := diffLines(describe(t, tr), tt.want); d != "" {
				t.Errorf("tree differs:%s", d)
			}
		})
	}
}

func TestAddTarBadInput(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"garbage", bytes.Repeat([]byte("x"), 1024), "adding tar at /: reading tar: archive/tar: invalid tar header"},
		{"truncated gzip", []byte{0x1f, 0x8b}, "adding tar at /: opening gzip stream: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, s := newTreeStore(t)
			err := AddTar(t.Context(), tr, s, bytes.NewReader(tt.data), "/")
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("AddTar error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestAddTarCancelled(t *testing.T) {
	tr, s := newTreeStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := AddTar(ctx, tr, s, bytes.NewReader(makeTar(t, allKinds)), "/")
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("AddTar with a cancelled context = %v, want context canceled", err)
	}
}

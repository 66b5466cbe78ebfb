package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/internal/fstree"
)

func TestAddDir(t *testing.T) {
	host := t.TempDir()
	p := func(name string) string { return filepath.Join(host, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p("usr/bin"), 0o755))
	must(os.Mkdir(p("secret"), 0o700))
	must(os.WriteFile(p("usr/bin/su"), []byte("setuid"), 0o755))
	must(os.Chmod(p("usr/bin/su"), fs.ModeSetuid|fs.ModeSetgid|0o755))
	must(os.WriteFile(p("usr/bin/a"), []byte("shared"), 0o644))
	must(os.Link(p("usr/bin/a"), p("usr/bin/b")))
	must(os.Symlink("/nonexistent/target", p("usr/bin/dangling")))
	must(unix.Mkfifo(p("secret/fifo"), 0o600))
	must(os.WriteFile(p("secret/owned"), []byte("o"), 0o640))
	must(os.Lchown(p("secret/owned"), 1234, 5678))
	must(os.Chmod(p("secret"), fs.ModeSticky|0o700))
	hasDev := unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) == nil
	if hasDev {
		must(os.Chmod(p("null"), 0o666)) // undo the umask
	} else {
		t.Log("mknod not permitted here: no device node in this test")
	}
	hasXattr := true
	if err := unix.Setxattr(p("usr/bin/su"), "user.plumb", []byte("yes"), 0); err != nil {
		if !errors.Is(err, unix.ENOTSUP) {
			t.Fatal(err)
		}
		hasXattr = false
		t.Log("no user xattrs on this filesystem")
	}
	// Fixed mtimes, set last (children change their directory's mtime).
	when := time.Unix(1700000000, 0)
	for _, name := range []string{"usr/bin/su", "usr/bin/a", "secret/owned", "secret", "usr/bin", "usr"} {
		must(os.Chtimes(p(name), when, when))
	}
	must(unix.Lutimes(p("usr/bin/dangling"), []unix.Timeval{{Sec: 1700000001}, {Sec: 1700000001}}))

	tr := fstree.New()
	if err := AddDir(tr, host, "/srv/x"); err != nil {
		t.Fatalf("AddDir: %v", err)
	}
	suXattr := ""
	if hasXattr {
		suXattr = " xattr user.plumb=yes"
	}
	want := []string{
		`srv drwxr-xr-x 0:0 ` + mtimeOf(t, host),
		`srv/x drwxr-xr-x 0:0 ` + mtimeOf(t, host),
		`secret dtrwx------ 0:0 1700000000`,
		`secret/fifo prw------- 0:0 ` + mtimeOf(t, p("secret/fifo")),
		`secret/owned -rw-r----- 1234:5678 1700000000 1 "o"`,
		`usr drwxr-xr-x 0:0 1700000000`,
		`usr/bin drwxr-xr-x 0:0 1700000000`,
		`usr/bin/a -rw-r--r-- 0:0 1700000000 6 "shared"`,
		`usr/bin/b -rw-r--r-- 0:0 1700000000 6 "shared"`,
		`usr/bin/dangling Lrwxrwxrwx 0:0 1700000001 -> /nonexistent/target`,
		`usr/bin/su ugrwxr-xr-x 0:0 1700000000 6 "setuid"` + suXattr,
	}
	for i, w := range want {
		if i >= 2 {
			want[i] = "srv/x/" + w
		}
	}
	if hasDev {
		want = append(want, `srv/x/null Dcrw-rw-rw- 0:0 `+mtimeOf(t, p("null"))+` dev 1:3`)
	}
	if d := diffLines(describe(t, tr), want); d != "" {
		t.Errorf("tree differs:%s", d)
	}
	if tr.Get("srv/x/usr/bin/a") != tr.Get("srv/x/usr/bin/b") {
		t.Errorf("hard links a and b are different nodes")
	}
	if got, want := tr.Get("srv/x/usr/bin/a").Source, fstree.HostFile(p("usr/bin/a")); got != want {
		t.Errorf("source = %v, want the host file %v", got, want)
	}
}

func mtimeOf(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(st.Mtim.Sec, 10)
}

// TestAddDirKeepsDirLinks: an overlay's bin/ lands in usr/bin on a merged-/usr
// tree, and the tree's bin symlink stays.
func TestAddDirKeepsDirLinks(t *testing.T) {
	host := t.TempDir()
	if err := os.MkdirAll(filepath.Join(host, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "bin", "tool"), []byte("t"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := fstree.New()
	if err := tr.Put("usr/bin", &fstree.Node{Mode: fs.ModeDir | 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Put("bin", &fstree.Node{Mode: fs.ModeSymlink | 0o777, Target: "/usr/bin"}); err != nil {
		t.Fatal(err)
	}
	if err := AddDir(tr, host, "/"); err != nil {
		t.Fatalf("AddDir: %v", err)
	}
	if n := tr.Get("bin"); n == nil || !n.IsSymlink() {
		t.Errorf("bin = %+v, want the symlink kept", n)
	}
	if n := tr.Get("usr/bin/tool"); n == nil || !n.IsRegular() {
		t.Errorf("usr/bin/tool = %+v, want the overlay's file", n)
	}
}

func TestAddDirBadInput(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ dir, wantErr string }{
		{f, "adding directory " + f + ": not a directory"},
		{f + "-missing", "adding directory " + f + "-missing: lstat " + f + "-missing: no such file or directory"},
	}
	for _, tt := range tests {
		err := AddDir(fstree.New(), tt.dir, "/")
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("AddDir(%s) = %v, want %q", tt.dir, err, tt.wantErr)
		}
	}
}

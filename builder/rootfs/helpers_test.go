package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/fstree"
)

// requireTool fails (or, under -short, skips) when a host tool is missing.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not found (apt-get install %s)", name, pkg)
		}
		t.Fatalf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// entry describes one member of a generated tar archive.
type entry struct {
	name   string
	typ    byte
	mode   int64
	body   string // regular files
	link   string // symlink target or hard link target
	uid    int
	gid    int
	major  int64
	minor  int64
	mtime  int64
	xattrs map[string]string
}

// makeTar writes the entries as a PAX tar archive.
func makeTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{
			Name:     e.name,
			Typeflag: e.typ,
			Mode:     mode,
			Uid:      e.uid,
			Gid:      e.gid,
			Linkname: e.link,
			Devmajor: e.major,
			Devminor: e.minor,
			ModTime:  time.Unix(e.mtime, 0),
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("writing tar header %s: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// describe renders every path of the tree except the root, one line each:
// "path mode uid:gid mtime size [-> target] [dev M:m] [xattr k=v] [body]"
// with the content of regular files up to 64 bytes.
func describe(t *testing.T, tr *fstree.Tree) []string {
	t.Helper()
	var out []string
	err := tr.Walk(func(p string, n *fstree.Node) error {
		if p == "." {
			return nil
		}
		out = append(out, describeNode(t, p, n))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func describeNode(t *testing.T, p string, n *fstree.Node) string {
	t.Helper()
	s := fmt.Sprintf("%s %v %d:%d %d", p, n.Mode, n.UID, n.GID, n.ModTime)
	switch {
	case n.IsRegular():
		s += fmt.Sprintf(" %d %q", n.Size, readSource(t, n))
	case n.IsSymlink():
		s += " -> " + n.Target
	case n.Mode&fs.ModeDevice != 0:
		s += fmt.Sprintf(" dev %d:%d", n.Major, n.Minor)
	}
	var keys []string
	for k := range n.Xattrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(" xattr %s=%s", k, n.Xattrs[k])
	}
	return s
}

func readSource(t *testing.T, n *fstree.Node) string {
	t.Helper()
	if n.Source == nil {
		return "<no source>"
	}
	rc, err := n.Source.Open()
	if err != nil {
		t.Fatalf("opening source: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func diffLines(got, want []string) string {
	var b strings.Builder
	g := map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range want {
		if !g[l] {
			fmt.Fprintf(&b, "\n  missing: %s", l)
		}
	}
	for _, l := range got {
		if !w[l] {
			fmt.Fprintf(&b, "\n  unexpected: %s", l)
		}
	}
	return b.String()
}

func newTreeStore(t *testing.T) (*fstree.Tree, *fstree.Store) {
	t.Helper()
	s, err := fstree.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fstree.New(), s
}

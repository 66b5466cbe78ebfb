// Package fstree holds the in-memory description of a filesystem tree that
// the builder assembles from a recipe's sources and then hands to the image
// writers (squashfs for the root, cpio for the initramfs). internal/diskimg
// takes its sources too, which is why it lives outside builder/: the
// installer (plumbd install) writes an ESP from it.
//
// A Tree keeps only metadata in memory; the bytes of regular files stay on
// the host (a source file, or a blob in a Store) and are opened when a writer
// needs them, so a tree of any size costs memory in proportion to its number
// of entries, not its bytes.
//
// Paths are slash-separated, relative, and clean ("usr/bin/sh"); the root
// directory is ".". Hard links are two paths holding the same *Node. A Tree
// is not safe for concurrent mutation; concurrent reads are fine.
package fstree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Node is one inode: a directory, regular file, symlink, device, fifo or
// socket. Two paths sharing a *Node are hard links.
type Node struct {
	// Mode holds the type bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice,
	// fs.ModeCharDevice, fs.ModeNamedPipe, fs.ModeSocket; none for a
	// regular file) and the permission bits including fs.ModeSetuid,
	// fs.ModeSetgid and fs.ModeSticky.
	Mode    fs.FileMode
	UID     uint32
	GID     uint32
	ModTime int64 // seconds since the Unix epoch

	// Target is a symlink's target, verbatim.
	Target string
	// Major and Minor number a device node.
	Major, Minor uint32

	// Size and Source describe a regular file's content: Source opens it.
	Size   int64
	Source Source

	// Xattrs maps extended attribute names ("security.capability") to values.
	Xattrs map[string][]byte
}

// Source opens a regular file's content. Each call returns a fresh reader
// positioned at the start.
type Source interface {
	Open() (io.ReadCloser, error)
}

// HostFile is a Source reading a file on the host.
type HostFile string

// Open opens the host file.
func (h HostFile) Open() (io.ReadCloser, error) { return os.Open(string(h)) }

// Bytes is a Source holding small content in memory (generated config files).
type Bytes []byte

// Open returns a reader over the bytes.
func (b Bytes) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(b))), nil
}

// IsDir, IsRegular and IsSymlink report the node's type.
func (n *Node) IsDir() bool     { return n.Mode.IsDir() }
func (n *Node) IsRegular() bool { return n.Mode.IsRegular() }
func (n *Node) IsSymlink() bool { return n.Mode&fs.ModeSymlink != 0 }

// Tree is a filesystem tree. The zero value is not usable; call New.
type Tree struct {
	nodes    map[string]*Node
	children map[string]map[string]struct{} // dir path -> child names
}

// New returns a tree holding only the root directory (0755, root:root).
func New() *Tree {
	t := &Tree{nodes: map[string]*Node{}, children: map[string]map[string]struct{}{}}
	t.nodes["."] = &Node{Mode: fs.ModeDir | 0o755}
	t.children["."] = map[string]struct{}{}
	return t
}

// ErrEscapes is returned for a path that leaves the tree ("../etc").
var ErrEscapes = errors.New("path escapes the tree")

// Clean turns p ("/usr/bin/", "./etc", "usr//lib") into the tree's form
// ("usr/bin"). It fails for a path that climbs out of the root.
func Clean(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty path")
	}
	trimmed := strings.TrimLeft(p, "/")
	if trimmed == "" {
		return ".", nil
	}
	for _, part := range strings.Split(trimmed, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q: %w", p, ErrEscapes)
		}
	}
	return path.Clean(trimmed), nil
}

// Get returns the node at p, or nil.
func (t *Tree) Get(p string) *Node {
	c, err := Clean(p)
	if err != nil {
		return nil
	}
	return t.nodes[c]
}

// Len returns the number of paths in the tree, the root included.
func (t *Tree) Len() int { return len(t.nodes) }

// MkdirAll creates p and any missing parents as directories with mode 0755,
// owner root, and time mtime. Existing directories are left as they are.
func (t *Tree) MkdirAll(p string, mtime int64) error {
	c, err := Clean(p)
	if err != nil {
		return err
	}
	if c == "." {
		return nil
	}
	if n := t.nodes[c]; n != nil {
		if !n.IsDir() {
			return fmt.Errorf("mkdir %s: exists and is not a directory", c)
		}
		return nil
	}
	if err := t.MkdirAll(path.Dir(c), mtime); err != nil {
		return err
	}
	return t.put(c, &Node{Mode: fs.ModeDir | 0o755, ModTime: mtime})
}

// Put adds or replaces the node at p, creating missing parent directories
// (0755, root, time n.ModTime). Replacing a directory with a non-directory
// removes its contents; replacing a directory with a directory keeps them and
// takes the new metadata (tar and OCI layer semantics).
func (t *Tree) Put(p string, n *Node) error {
	c, err := Clean(p)
	if err != nil {
		return err
	}
	if c == "." {
		if !n.IsDir() {
			return fmt.Errorf("put /: the root must be a directory")
		}
		t.nodes["."] = n
		return nil
	}
	if err := t.MkdirAll(path.Dir(c), n.ModTime); err != nil {
		return err
	}
	if old := t.nodes[c]; old != nil && old.IsDir() && !n.IsDir() {
		t.Remove(c)
	}
	return t.put(c, n)
}

func (t *Tree) put(c string, n *Node) error {
	dir, name := path.Dir(c), path.Base(c)
	parent := t.nodes[dir]
	if parent == nil || !parent.IsDir() {
		return fmt.Errorf("put %s: parent %s is not a directory", c, dir)
	}
	t.nodes[c] = n
	t.children[dir][name] = struct{}{}
	if n.IsDir() && t.children[c] == nil {
		t.children[c] = map[string]struct{}{}
	}
	return nil
}

// Link makes newPath a hard link to the node at oldPath.
func (t *Tree) Link(oldPath, newPath string) error {
	n := t.Get(oldPath)
	if n == nil {
		return fmt.Errorf("link %s -> %s: %s does not exist", newPath, oldPath, oldPath)
	}
	if n.IsDir() {
		return fmt.Errorf("link %s -> %s: cannot hard-link a directory", newPath, oldPath)
	}
	return t.Put(newPath, n)
}

// Remove deletes p and, for a directory, everything below it. Removing a
// missing path is not an error.
func (t *Tree) Remove(p string) {
	c, err := Clean(p)
	if err != nil || c == "." {
		return
	}
	if _, ok := t.nodes[c]; !ok {
		return
	}
	for name := range t.children[c] {
		t.Remove(c + "/" + name)
	}
	delete(t.children, c)
	delete(t.nodes, c)
	delete(t.children[path.Dir(c)], path.Base(c))
}

// Children returns the names in directory p, sorted bytewise (the order
// squashfs and reproducible archives need).
func (t *Tree) Children(p string) []string {
	c, err := Clean(p)
	if err != nil {
		return nil
	}
	m := t.children[c]
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// WalkFunc is called for each path in Walk's order.
type WalkFunc func(p string, n *Node) error

// Walk visits every path depth-first, parents before children, children in
// bytewise name order, starting with the root ".". It stops at the first error.
func (t *Tree) Walk(fn WalkFunc) error {
	return t.walk(".", fn)
}

func (t *Tree) walk(p string, fn WalkFunc) error {
	n := t.nodes[p]
	if err := fn(p, n); err != nil {
		return err
	}
	if !n.IsDir() {
		return nil
	}
	for _, name := range t.Children(p) {
		child := name
		if p != "." {
			child = p + "/" + name
		}
		if err := t.walk(child, fn); err != nil {
			return err
		}
	}
	return nil
}

// SetTimes sets every node's ModTime to mtime (the reproducible build's
// SOURCE_DATE_EPOCH clamp: times newer than mtime are lowered to it when
// clampOnly is true, all times are set when false).
func (t *Tree) SetTimes(mtime int64, clampOnly bool) {
	for _, n := range t.nodes {
		if !clampOnly || n.ModTime > mtime {
			n.ModTime = mtime
		}
	}
}

package squashfs

import (
	"fmt"
	"io/fs"
	"math"
	"path"

	"github.com/plumb-os/plumb/internal/fstree"
)

// entry is one path of the tree: a name in its parent directory.
type entry struct {
	name     string
	path     string
	ino      *inode
	children []*entry // directories only, in name order
}

// inode is one squashfs inode; hard links share it.
type inode struct {
	node  *fstree.Node
	path  string // first path, for messages
	typ   uint16 // basic type
	num   uint32 // inode number, 1-based
	nlink uint32
	uid   uint16 // id table indexes
	gid   uint16
	xattr uint32
	ref   uint64 // inode table reference, set when written
	done  bool

	// regular files
	start   uint64
	blocks  []uint32
	frag    uint32
	fragOff uint32
	sparse  uint64
	dupOf   *inode // same content as this earlier file: share its blocks
}

// builder holds the plan of an image and the state of writing it.
type builder struct {
	opts      Options
	root      *entry
	inodes    []*inode // by number - 1
	files     []*inode // regular files in walk order (first path)
	dataBytes int64
	ids       []uint32
	fragCount uint32     // fragment blocks sent by the reader
	fragments []fragment // written fragment blocks, by index
	xattrs    xattrTable
	dedup     bool // some content was stored once for several files
}

type fragment struct {
	start uint64
	size  uint32
}

// plan checks the tree and lays out entries, inode numbers, ids and xattrs.
func plan(t *fstree.Tree, opts Options) (*builder, error) {
	b := &builder{opts: opts}
	dirs := map[string]*entry{}
	byNode := map[*fstree.Node]*inode{}
	idIndex := map[uint32]uint16{}
	id := func(v uint32) (uint16, error) {
		if i, ok := idIndex[v]; ok {
			return i, nil
		}
		if len(b.ids) == 1<<16 {
			return 0, fmt.Errorf("more than 65536 distinct uids and gids")
		}
		i := uint16(len(b.ids))
		idIndex[v] = i
		b.ids = append(b.ids, v)
		return i, nil
	}
	err := t.Walk(func(p string, n *fstree.Node) error {
		if n == nil {
			return fmt.Errorf("squashfs: %s: nil node", p)
		}
		e := &entry{name: path.Base(p), path: p}
		if len(e.name) > 256 {
			return fmt.Errorf("squashfs: %s: name is %d bytes, expected at most 256", p, len(e.name))
		}
		if p == "." {
			if !n.IsDir() {
				return fmt.Errorf("squashfs: root: expected a directory, got mode %v", n.Mode)
			}
			b.root = e
		} else {
			parent := dirs[path.Dir(p)]
			if parent == nil {
				return fmt.Errorf("squashfs: %s: parent directory missing from the walk", p)
			}
			parent.children = append(parent.children, e)
		}
		if n.IsDir() {
			dirs[p] = e
		}
		if in := byNode[n]; in != nil && !n.IsDir() {
			e.ino = in
			in.nlink++
			return nil
		}
		in, err := newInode(p, n)
		if err != nil {
			return err
		}
		if in.uid, err = id(n.UID); err != nil {
			return fmt.Errorf("squashfs: %s: %w", p, err)
		}
		if in.gid, err = id(n.GID); err != nil {
			return fmt.Errorf("squashfs: %s: %w", p, err)
		}
		if in.xattr, err = b.xattrs.add(n.Xattrs); err != nil {
			return fmt.Errorf("squashfs: %s: %w", p, err)
		}
		byNode[n] = in
		e.ino = in
		if in.typ == typeFile {
			b.files = append(b.files, in)
			b.dataBytes += n.Size
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if b.root == nil {
		return nil, fmt.Errorf("squashfs: the tree has no root")
	}
	// Number inodes in the order they are written: depth first, a
	// directory after its contents, so entries of one directory get
	// nearby numbers.
	var number func(e *entry)
	number = func(e *entry) {
		for _, c := range e.children {
			if c.ino.typ == typeDir {
				e.ino.nlink++ // the child's ".."
				number(c)
			} else if c.ino.num == 0 {
				b.inodes = append(b.inodes, c.ino)
				c.ino.num = uint32(len(b.inodes))
			}
		}
		b.inodes = append(b.inodes, e.ino)
		e.ino.num = uint32(len(b.inodes))
	}
	number(b.root)
	if len(b.inodes) >= math.MaxUint32 {
		return nil, fmt.Errorf("squashfs: %d inodes, expected fewer than 2^32", len(b.inodes))
	}
	return b, nil
}

func newInode(p string, n *fstree.Node) (*inode, error) {
	in := &inode{node: n, path: p, nlink: 1, frag: invalidFrag}
	m := n.Mode
	switch {
	case m.IsDir():
		in.typ = typeDir
		in.nlink = 2
	case m.IsRegular():
		in.typ = typeFile
		if n.Size < 0 {
			return nil, fmt.Errorf("squashfs: %s: size: expected 0 or more, got %d", p, n.Size)
		}
		if n.Size > 0 && n.Source == nil {
			return nil, fmt.Errorf("squashfs: %s: regular file of %d bytes has no source", p, n.Size)
		}
	case m&fs.ModeSymlink != 0:
		in.typ = typeSymlink
		if len(n.Target) == 0 || len(n.Target) > 4095 {
			return nil, fmt.Errorf("squashfs: %s: symlink target: expected 1..4095 bytes, got %d", p, len(n.Target))
		}
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		in.typ = typeChr
	case m&fs.ModeDevice != 0:
		in.typ = typeBlk
	case m&fs.ModeNamedPipe != 0:
		in.typ = typeFifo
	case m&fs.ModeSocket != 0:
		in.typ = typeSock
	default:
		return nil, fmt.Errorf("squashfs: %s: mode %v: expected a directory, regular file, symlink, device, fifo or socket", p, m)
	}
	if in.typ == typeBlk || in.typ == typeChr {
		if n.Major > 0xfff || n.Minor > 0xfffff {
			return nil, fmt.Errorf("squashfs: %s: device %d:%d: expected major < 4096 and minor < 1048576", p, n.Major, n.Minor)
		}
	}
	if n.ModTime < 0 || n.ModTime > math.MaxUint32 {
		return nil, fmt.Errorf("squashfs: %s: mod time: expected 0..%d seconds, got %d", p, uint32(math.MaxUint32), n.ModTime)
	}
	return in, nil
}

// perm returns the 12 permission bits of a mode as stored in an inode.
func perm(m fs.FileMode) uint16 {
	p := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// rdev encodes a device number the way Linux's new_encode_dev does.
func rdev(major, minor uint32) uint32 {
	return minor&0xff | major<<8 | (minor&^0xff)<<12
}

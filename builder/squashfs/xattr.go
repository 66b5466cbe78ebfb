package squashfs

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

// xattrTable collects the distinct xattr sets of the tree. Each set is
// stored once (inline values) and numbered in first-seen order.
type xattrTable struct {
	index map[string]uint32 // serialised set -> id
	sets  []xattrSet
}

type xattrSet struct {
	kv    []byte // key/value entries, uncompressed
	count uint32
	size  uint32 // sum of len(full name)+1+len(value), as mksquashfs
}

var xattrPrefixes = []struct {
	prefix string
	typ    uint16
}{
	{"user.", 0},
	{"trusted.", 1},
	{"security.", 2},
}

// add returns the id of the set m, or invalidXattr for an empty set.
func (x *xattrTable) add(m map[string][]byte) (uint32, error) {
	if len(m) == 0 {
		return invalidXattr, nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	var s xattrSet
	le := binary.LittleEndian
	for _, name := range names {
		typ, short, ok := splitXattr(name)
		if !ok {
			return 0, fmt.Errorf("xattr %q: expected a name in the namespace \"user\", \"trusted\" or \"security\"", name)
		}
		v := m[name]
		if len(short) > 0xffff || len(v) > 0xffff {
			return 0, fmt.Errorf("xattr %q: name of %d bytes and value of %d bytes: expected at most 65535 each", name, len(short), len(v))
		}
		s.kv = le.AppendUint16(s.kv, typ)
		s.kv = le.AppendUint16(s.kv, uint16(len(short)))
		s.kv = append(s.kv, short...)
		s.kv = le.AppendUint32(s.kv, uint32(len(v)))
		s.kv = append(s.kv, v...)
		s.count++
		s.size += uint32(len(name) + 1 + len(v))
	}
	if x.index == nil {
		x.index = map[string]uint32{}
	}
	if id, ok := x.index[string(s.kv)]; ok {
		return id, nil
	}
	id := uint32(len(x.sets))
	x.index[string(s.kv)] = id
	x.sets = append(x.sets, s)
	return id, nil
}

func splitXattr(name string) (uint16, string, bool) {
	for _, p := range xattrPrefixes {
		if short, ok := strings.CutPrefix(name, p.prefix); ok && short != "" {
			return p.typ, short, true
		}
	}
	return 0, "", false
}

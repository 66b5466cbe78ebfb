package recipe

import (
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/plumb-os/plumb/internal/yamlnode"
)

// Size is a number of bytes. In YAML it is a plain integer or a string with
// a unit: "64MiB", "2GiB", "512M", "128KiB", "4096". The units K, M, G, T
// and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB are powers of
// 1000; B is bytes. Units are case-sensitive apart from an optional
// lower-case k ("64k", "64kB", "64kiB").
type Size int64

// Common sizes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]Size{
	"": 1, "B": 1,
	"K": KiB, "k": KiB, "KiB": KiB, "kiB": KiB,
	"M": MiB, "MiB": MiB,
	"G": GiB, "GiB": GiB,
	"T": TiB, "TiB": TiB,
	"KB": 1000, "kB": 1000,
	"MB": 1000 * 1000,
	"GB": 1000 * 1000 * 1000,
	"TB": 1000 * 1000 * 1000 * 1000,
}

// ParseSize parses a size such as "64MiB", "2GiB", "512M" or "4096".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("expected a size like \"2GiB\", got %q", s)
	}
	unit, ok := sizeUnits[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("expected a size like \"2GiB\" (units B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB, TB), got %q", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n) * unit, nil
}

// String gives the size in the largest binary unit that divides it exactly
// ("128MiB", "3GiB"), or in bytes ("1000").
func (s Size) String() string {
	for _, u := range []struct {
		size Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML decodes an integer or a size string.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.ShortTag() == "!!bool" {
		return fmt.Errorf("expected a size like \"2GiB\", got %s", yamlnode.Describe(n))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalYAML encodes the size as its String form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// Mode is a Unix permission mode (the low 12 bits: setuid, setgid, sticky
// and rwx for user, group, others). In YAML it is an octal string such as
// "0644" or "4755"; an unquoted 0644 is read as octal too.
type Mode uint32

// ParseMode parses an octal mode of one to four digits after an optional
// "0" or "0o" prefix: "0644", "755", "0o4755".
func ParseMode(s string) (Mode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	if len(t) > 4 && t[0] == '0' {
		t = strings.TrimLeft(t, "0")
	}
	v, err := strconv.ParseUint(t, 8, 32)
	if t == "" || len(t) > 4 || err != nil {
		return 0, fmt.Errorf("expected an octal mode like \"0644\", got %q", s)
	}
	return Mode(v), nil
}

// String gives the mode as four octal digits, "0644".
func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// Perm returns the mode as fs.FileMode permission bits, with the setuid,
// setgid and sticky bits mapped to fs.ModeSetuid, fs.ModeSetgid and
// fs.ModeSticky (the convention fstree.Node uses).
func (m Mode) Perm() fs.FileMode {
	p := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		p |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		p |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		p |= fs.ModeSticky
	}
	return p
}

// UnmarshalYAML decodes an octal mode string or unquoted octal number.
func (m *Mode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return fmt.Errorf("expected an octal mode like \"0644\", got %s", yamlnode.Describe(n))
	}
	v, err := ParseMode(n.Value)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalYAML encodes the mode as an octal string.
func (m Mode) MarshalYAML() (any, error) { return m.String(), nil }

// Packages is a list of Debian package names. In YAML it is a list or a
// single string.
type Packages []string

// UnmarshalYAML decodes a list of strings or a single string.
func (p *Packages) UnmarshalYAML(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		*p = Packages{n.Value}
		return nil
	case n.Kind == yaml.SequenceNode:
		out := make(Packages, 0, len(n.Content))
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.ShortTag() != "!!str" {
				return &Error{Line: c.Line, Field: fmt.Sprintf("[%d]", i), Msg: "expected a package name, got " + yamlnode.Describe(c)}
			}
			out = append(out, c.Value)
		}
		*p = out
		return nil
	}
	return fmt.Errorf("expected a package name or a list of them, got %s", yamlnode.Describe(n))
}

package workloadsrc

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/plumb-os/plumb/format/workload"
	"io"

	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a problem in a YAML workload file, printed as one line:
// FILE:LINE: FIELD: message.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(strings.ReplaceAll(e.Msg, "\n", "; "))
	return b.String()
}

// Source is a manifest read from YAML with the archives it names.
type Source struct {
	Manifest *workload.Manifest
	// Archives maps a container's index to the host path of its OCI image
	// archive (the YAML's "archive:", relative to the YAML file); its
	// Target is set to apps/<group>/<base name>.
	Archives map[int]string
}

// ParseYAML reads a workload file for group. file names it in errors and
// anchors relative archive paths. Unknown keys, wrong types and invalid
// values are errors with the line.
func ParseYAML(file string, data []byte, group string) (*Source, error) {
	if err := workload.ValidGroup(group); err != nil {
		return nil, err
	}
	p := &parser{file: file}
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	src := &Source{Manifest: &workload.Manifest{}, Archives: map[int]string{}}
	lines := map[int]int{}
	if root != nil {
		err := p.mapping(root, "", map[string]func(*yaml.Node) error{
			"containers": func(n *yaml.Node) error {
				if n.Kind != yaml.SequenceNode {
					return p.errAt(n, "containers", "expected a list, got %s", describe(n))
				}
				for i, cn := range n.Content {
					var c workload.Container
					var archive string
					if err := p.container(cn, fmt.Sprintf("containers[%d]", i), &c, &archive); err != nil {
						return err
					}
					if archive != "" {
						if c.Target != "" {
							return p.errAt(cn, fmt.Sprintf("containers[%d]", i), "expected archive or target, got both")
						}
						if !filepath.IsAbs(archive) {
							archive = filepath.Join(filepath.Dir(file), archive)
						}
						src.Archives[i] = archive
						c.Target = workload.TargetPrefix + group + "/" + filepath.Base(archive)
					}
					lines[i] = cn.Line
					src.Manifest.Containers = append(src.Manifest.Containers, c)
				}
				return nil
			},
		})
		if err != nil {
			return nil, err
		}
	}
	if err := src.Manifest.Validate(group); err != nil {
		var fe *workload.FieldError
		if errors.As(err, &fe) {
			return nil, &Error{File: file, Line: p.lineOf(fe, lines), Field: strings.SplitN(fe.Error(), ": ", 2)[0], Msg: fe.Msg}
		}
		return nil, &Error{File: file, Msg: err.Error()}
	}
	return src, nil
}

type parser struct {
	file  string
	lines map[string]int // field path -> line
}

func (p *parser) lineOf(fe *workload.FieldError, containers map[int]int) int {
	f := strings.SplitN(fe.Error(), ": ", 2)[0]
	for f != "" {
		if l, ok := p.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return containers[fe.Index]
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

func (p *parser) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		msg, line := err.Error(), 0
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			msg = msg[len(m[0]):]
			line, _ = strconv.Atoi(m[1])
		}
		return nil, &Error{File: p.file, Line: line, Msg: "invalid YAML: " + msg}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Error{File: p.file, Line: next.Line, Msg: "expected one YAML document, found a second one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func (p *parser) errAt(n *yaml.Node, field, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!str":
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// mapping walks mapping n, calling the handler of each key; unknown and
// repeated keys are errors.
func (p *parser) mapping(n *yaml.Node, field string, keys map[string]func(*yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errAt(n, field, "expected a mapping of keys to values, got %s", describe(n))
	}
	if p.lines == nil {
		p.lines = map[string]int{}
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return p.errAt(k, field, "expected a key name, got %s", describe(k))
		}
		if first, dup := seen[k.Value]; dup {
			return p.errAt(k, field, "duplicate key %q (first at line %d)", k.Value, first)
		}
		seen[k.Value] = k.Line
		h, ok := keys[k.Value]
		if !ok {
			return p.errAt(k, field, "unknown key %q (expected one of: %s)", k.Value, strings.Join(names, ", "))
		}
		sub := k.Value
		if field != "" {
			sub = field + "." + k.Value
		}
		p.lines[sub] = k.Line
		if v.Kind == yaml.AliasNode || v.Anchor != "" {
			return p.errAt(v, sub, "anchors and aliases are not supported")
		}
		if err := h(v); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) str(n *yaml.Node, field string, dst *string) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.ShortTag() == "!!bool" || n.ShortTag() == "!!map" {
		return p.errAt(n, field, "expected a string, got %s", describe(n))
	}
	*dst = n.Value
	return nil
}

func (p *parser) strs(n *yaml.Node, field string, dst *[]string) error {
	if n.Kind != yaml.SequenceNode {
		return p.errAt(n, field, "expected a list of strings like [\"/bin/app\", \"--flag\"], got %s", describe(n))
	}
	for i, c := range n.Content {
		var s string
		if err := p.str(c, fmt.Sprintf("%s[%d]", field, i), &s); err != nil {
			return err
		}
		*dst = append(*dst, s)
	}
	return nil
}

func (p *parser) container(n *yaml.Node, field string, c *workload.Container, archive *string) error {
	f := func(k string) string { return field + "." + k }
	return p.mapping(n, field, map[string]func(*yaml.Node) error{
		"name":    func(v *yaml.Node) error { return p.str(v, f("name"), &c.Name) },
		"image":   func(v *yaml.Node) error { return p.str(v, f("image"), &c.Image) },
		"target":  func(v *yaml.Node) error { return p.str(v, f("target"), &c.Target) },
		"archive": func(v *yaml.Node) error { return p.str(v, f("archive"), archive) },
		"command": func(v *yaml.Node) error { return p.strs(v, f("command"), &c.Command) },
		"restart": func(v *yaml.Node) error { return p.str(v, f("restart"), &c.Restart) },
		"env": func(v *yaml.Node) error {
			if v.Kind != yaml.MappingNode {
				return p.errAt(v, f("env"), "expected a mapping of NAME: value, got %s", describe(v))
			}
			c.Env = map[string]string{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, val := v.Content[i], v.Content[i+1]
				if _, dup := c.Env[k.Value]; dup {
					return p.errAt(k, f("env"), "duplicate variable %q", k.Value)
				}
				var s string
				if err := p.str(val, f("env."+k.Value), &s); err != nil {
					return err
				}
				c.Env[k.Value] = s
			}
			return nil
		},
		"mounts": func(v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return p.errAt(v, f("mounts"), "expected a list, got %s", describe(v))
			}
			for i, mn := range v.Content {
				var m workload.Mount
				mf := fmt.Sprintf("%s[%d]", f("mounts"), i)
				err := p.mapping(mn, mf, map[string]func(*yaml.Node) error{
					"source": func(v *yaml.Node) error { return p.str(v, mf+".source", &m.Source) },
					"target": func(v *yaml.Node) error { return p.str(v, mf+".target", &m.Target) },
					"readonly": func(v *yaml.Node) error {
						if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
							return p.errAt(v, mf+".readonly", "expected true or false, got %s", describe(v))
						}
						m.ReadOnly = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
						return nil
					},
				})
				if err != nil {
					return err
				}
				c.Mounts = append(c.Mounts, m)
			}
			return nil
		},
		"health": func(v *yaml.Node) error {
			h := &workload.Health{}
			c.Health = h
			hf := f("health")
			return p.mapping(v, hf, map[string]func(*yaml.Node) error{
				"command": func(v *yaml.Node) error { return p.strs(v, hf+".command", &h.Command) },
				"interval": func(v *yaml.Node) error {
					var s string
					if err := p.str(v, hf+".interval", &s); err != nil {
						return err
					}
					d, err := time.ParseDuration(s)
					if err != nil {
						return p.errAt(v, hf+".interval", "expected a duration like \"30s\", got %q", s)
					}
					h.Interval = workload.Duration(d)
					return nil
				},
				"retries": func(v *yaml.Node) error {
					n, err := strconv.Atoi(v.Value)
					if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil {
						return p.errAt(v, hf+".retries", "expected an integer, got %s", describe(v))
					}
					h.Retries = n
					return nil
				},
			})
		},
	})
}

package recipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/plumb-os/plumb/internal/yamlnode"
)

// decoder fills Go values from a yaml.Node tree strictly: every key must
// name a field, every value must have the field's type, keys may not repeat.
// It records the line of every field it sees, by field path, so that later
// checks (Validate, host paths) can point at the line too.
type decoder struct {
	file  string
	lines map[string]int
	nulls map[string]bool
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	yamlLineRE      = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)
)

// parseDocument parses data as exactly one YAML document and returns its
// root node (nil for an empty document).
func parseDocument(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(file, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(file, data, err)
	default:
		return nil, &Error{File: file, Line: next.Line, Msg: "expected one YAML document, found a second one"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner) errors; see syntaxError.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError rewrites a yaml.v3 error ("yaml: line 3: found a tab
// character that violates indentation", possibly several lines) into one
// *Error with the file and line.
func syntaxError(file string, data []byte, err error) error {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line = n
			// yaml.v3 reports scanner errors with 1-based lines but
			// parser errors with the 0-based line of the mark.
			if parserProblems[msg] {
				line++
			}
		}
	}
	// A problem at the end of the input is shown on the last line that
	// has text, not on the empty line after it.
	lines := bytes.Split(bytes.TrimRight(data, " \t\r\n"), []byte("\n"))
	line = min(line, len(lines))
	indent := bytes.TrimLeft(lines[line-1], " \t")
	if bytes.ContainsRune(lines[line-1][:len(lines[line-1])-len(indent)], '\t') || strings.Contains(msg, "tab character") {
		msg += " (indent with spaces, not tabs)"
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg, Err: err}
}

// errAt builds an *Error for field at node n.
func (d *decoder) errAt(n *yaml.Node, field, format string, args ...any) error {
	return &Error{File: d.file, Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// decode fills v from n. path is the field path of v ("" for the root).
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) error {
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errAt(n, path, "anchors and aliases are not supported in recipes")
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		// An empty value leaves the field unset, as if the key were absent.
		d.nulls[path] = true
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n)
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			c := within(path, e).(*Error)
			c.File = d.file
			if c.Line == 0 {
				c.Line = n.Line
			}
			return c
		}
		return &Error{File: d.file, Line: n.Line, Field: path, Msg: err.Error()}
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			return d.errAt(n, path, "expected a duration like \"30s\" or \"5m\", got %s", yamlnode.Describe(n))
		}
		t, err := time.ParseDuration(n.Value)
		if err != nil {
			return d.errAt(n, path, "expected a duration like \"30s\" or \"5m\", got %q", n.Value)
		}
		v.SetInt(int64(t))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return d.errAt(n, path, "expected a string, got %s", yamlnode.Describe(n))
		}
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float":
			v.SetString(n.Value)
			return nil
		}
		return d.errAt(n, path, "expected a string, got %s (quote it if you mean the text)", yamlnode.Describe(n))
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return d.errAt(n, path, "expected true or false, got %s", yamlnode.Describe(n))
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.errAt(n, path, "expected true or false, got %s", yamlnode.Describe(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			return d.errAt(n, path, "expected an integer, got %s", yamlnode.Describe(n))
		}
		v.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil || v.OverflowUint(u) {
			return d.errAt(n, path, "expected an integer from 0 to %d, got %s", uint64(1)<<(v.Type().Bits())-1, yamlnode.Describe(n))
		}
		v.SetUint(u)
		return nil
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, path, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.errAt(n, path, "expected a list, got %s", yamlnode.Describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.decode(c, fmt.Sprintf("%s[%d]", path, i), s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Struct:
		return d.decodeStruct(n, path, v)
	}
	return d.errAt(n, path, "internal error: cannot decode into %s", v.Type())
}

// decodeStruct fills struct v from mapping n, by the fields' yaml tags.
func (d *decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) error {
	if n.Kind != yaml.MappingNode {
		return d.errAt(n, path, "expected a mapping of keys to values, got %s", yamlnode.Describe(n))
	}
	t := v.Type()
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		index[name] = i
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return d.errAt(k, path, "expected a key name, got %s", yamlnode.Describe(k))
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			return d.errAt(k, path, "duplicate key %q (first at line %d)", key, first)
		}
		seen[key] = k.Line
		fi, ok := index[key]
		if !ok {
			return d.errAt(k, path, "unknown key %q (expected one of: %s)", key, strings.Join(names, ", "))
		}
		field := key
		if path != "" {
			field = path + "." + key
		}
		d.lines[field] = k.Line
		if err := d.decode(val, field, v.Field(fi)); err != nil {
			return err
		}
	}
	return nil
}

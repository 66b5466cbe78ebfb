// Package jsonkeep keeps the members of a JSON object that a reader does
// not know, so that a value read from a file a newer version wrote and
// written back does not lose what that version put there. A device that
// rolls back runs the older reader on the newer file (state.json,
// workloads.json). It imports only the standard library, so the format
// layer may use it.
package jsonkeep

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
)

// Unknown holds object members by name, as they were read.
type Unknown map[string]json.RawMessage

// Decode decodes data, one JSON object, into v (a pointer to a struct) and
// returns the members none of v's fields claim (nil when there are none).
func Decode(data []byte, v any) (Unknown, error) {
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	known := names(reflect.TypeOf(v).Elem())
	var out Unknown
	for k, raw := range all {
		if !known(k) {
			if out == nil {
				out = Unknown{}
			}
			out[k] = raw
		}
	}
	return out, nil
}

// Encode marshals v (a struct) and appends the members of extra its JSON
// does not have, sorted by name.
func Encode(v any, extra Unknown) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	if len(b) < 2 || b[len(b)-1] != '}' {
		return nil, errors.New("jsonkeep: expected a JSON object")
	}
	known := names(reflect.TypeOf(v))
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !known(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		buf.Write(name)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// names returns a matcher of the member names t's fields decode, with
// encoding/json's case-insensitive match.
func names(t reflect.Type) func(string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var ns []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			ns = append(ns, name)
		}
	}
	walk(t)
	return func(k string) bool {
		for _, n := range ns {
			if strings.EqualFold(n, k) {
				return true
			}
		}
		return false
	}
}

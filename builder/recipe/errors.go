package recipe

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid matches, with errors.Is, every error that reports bad recipe
// input: YAML syntax, unknown keys, wrong types, failed validation and host
// paths that do not exist. The CLI maps it to exit code 2.
var ErrInvalid = errors.New("invalid recipe")

// Error is one problem in a recipe. Its Error method gives exactly one line:
//
//	FILE:LINE: FIELD: MESSAGE
//
// File, Line and Field are left out when unknown (a recipe built in Go has
// no file or lines). Field is a path such as "partitions.root",
// "rootfs[1]" or "agent.health[0].url".
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
	Err   error // underlying cause, if any (for example an *fs.PathError)
}

// Error returns the problem as one line.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// oneLine replaces line breaks so that a message never spans lines, whatever
// text (a key, a value, a decoder message) was put into it.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)
}

// fieldErr builds an *Error for field with no file or line yet; the caller
// that knows the position fills them in.
func fieldErr(field, msg string) *Error { return &Error{Field: field, Msg: msg} }

// within prefixes the field path of err (an *Error from a sub-type's
// Validate) with parent, so that "level" becomes "compression.level" and
// "url" becomes "agent.health[0].url".
func within(parent string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{Field: parent, Msg: err.Error(), Err: err}
	}
	c := *e
	switch {
	case parent == "":
	case c.Field == "":
		c.Field = parent
	case strings.HasPrefix(c.Field, "["):
		c.Field = parent + c.Field
	default:
		c.Field = parent + "." + c.Field
	}
	return &c
}

// Package errclass is the one "error with a class" type: an error whose
// message is its own and that also matches a class sentinel (errors.Is),
// such as the commands' exit classes (bad input: 2, verification failed:
// 3) or a package's refusal sentinels. It imports only the standard
// library.
package errclass

import (
	"errors"
	"fmt"
)

// Error is Err, matching Class too.
type Error struct {
	Err   error
	Class error
}

// New returns err marked with class (nil for a nil err).
func New(class, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Class: class}
}

// Errorf is New(class, fmt.Errorf(format, args...)).
func Errorf(class error, format string, args ...any) error {
	return &Error{Err: fmt.Errorf(format, args...), Class: class}
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap gives both the cause and the class to errors.Is and errors.As.
func (e *Error) Unwrap() []error { return []error{e.Err, e.Class} }

// Is reports whether err has class (a shorthand for errors.Is).
func Is(err, class error) bool { return errors.Is(err, class) }

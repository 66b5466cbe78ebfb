// Package cli holds the verbs of the plumb and plumbd commands: each verb
// turns flags into an options struct and calls a package that does the work.
// It owns the mapping from error classes to exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes, shared by plumb and plumbd (restic's convention).
const (
	exitOK           = 0
	exitFailure      = 1
	exitBadInput     = 2
	exitVerification = 3
	exitCancelled    = 130
)

// ErrBadInput marks errors caused by the user's input (flags, recipes,
// files): exit code 2.
var ErrBadInput = errors.New("bad input")

// ErrVerification marks a failed signature, digest or attestation check:
// exit code 3.
var ErrVerification = errors.New("verification failed")

// badInput wraps err so that it maps to exit code 2.
func badInput(err error) error { return &classified{err: err, class: ErrBadInput} }

type classified struct {
	err   error
	class error
}

func (c *classified) Error() string        { return c.err.Error() }
func (c *classified) Unwrap() []error      { return []error{c.err, c.class} }
func (c *classified) Is(target error) bool { return target == c.class }

// badInputClasses are sentinel errors from other packages that mean the
// user's input was wrong. Registered by the files that import those packages.
var badInputClasses []error

// exitCode reports err on stderr as one line and returns its exit code.
func exitCode(err error, stderr io.Writer, prog string) int {
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: cancelled\n", prog)
		return exitCancelled
	case errors.Is(err, ErrVerification):
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return exitVerification
	case errors.Is(err, ErrBadInput), isBadInput(err):
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return exitBadInput
	default:
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return exitFailure
	}
}

func isBadInput(err error) bool {
	for _, c := range badInputClasses {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

// Package cli is what the plumb and plumbd commands share: the verb
// environment (Env), the error classes and their exit codes, and cobra's
// usage errors. The verbs are in internal/cli/plumb (build side) and
// internal/cli/plumbd (device side): each verb turns flags into an options
// struct and calls a package that does the work. The two sides never
// import each other, so plumbd links no build-side code.
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
	ExitOK           = 0
	ExitFailure      = 1
	ExitBadInput     = 2
	ExitVerification = 3
	ExitCancelled    = 130
)

// ErrBadInput marks errors caused by the user's input (flags, recipes,
// files): exit code 2.
var ErrBadInput = errors.New("bad input")

// ErrVerification marks a failed signature, digest or attestation check:
// exit code 3.
var ErrVerification = errors.New("verification failed")

// BadInput wraps err so that it maps to exit code 2.
func BadInput(err error) error { return &classified{err: err, class: ErrBadInput} }

// Verification wraps err so that it maps to exit code 3.
func Verification(err error) error { return &classified{err: err, class: ErrVerification} }

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

// verificationClasses are sentinel errors from other packages that mean a
// signature, digest or attestation check failed.
var verificationClasses []error

// RegisterVerification registers sentinel errors of other packages that
// mean verification failed (exit code 3). Call it from init.
func RegisterVerification(errs ...error) { verificationClasses = append(verificationClasses, errs...) }

// RegisterBadInput registers sentinel errors of other packages that mean
// the user's input was wrong (exit code 2). Call it from init.
func RegisterBadInput(errs ...error) { badInputClasses = append(badInputClasses, errs...) }

// ExitCode reports err on stderr as one line and returns its exit code.
func ExitCode(err error, stderr io.Writer, prog string) int {
	if err == nil {
		return ExitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: cancelled\n", prog)
		return ExitCancelled
	case errors.Is(err, ErrVerification), isClass(err, verificationClasses):
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return ExitVerification
	case errors.Is(err, ErrBadInput), isClass(err, badInputClasses):
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return ExitBadInput
	default:
		fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		return ExitFailure
	}
}

func isClass(err error, classes []error) bool {
	for _, c := range classes {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

package fetch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// ErrVerification marks a refusal of what the repository served: a bad or
// missing signature, a rollback, a length or sha256 that differs from the
// trusted metadata, malformed metadata, expired metadata.
var ErrVerification = errors.New("verification failed")

// ErrNotFound marks a target the trusted metadata does not list.
var ErrNotFound = errors.New("not in the trusted metadata")

// ErrExpired marks trusted metadata whose expiry time has passed (a freeze
// attack, or a repository nobody re-signed). Errors matching ErrExpired
// also match ErrVerification.
var ErrExpired = errors.New("repository metadata expired")

// refusal is a verification failure: one line of message, its classes and
// go-tuf's original error as the cause.
type refusal struct {
	msg     string
	classes []error
	cause   error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.cause }
func (r *refusal) Is(target error) bool {
	for _, c := range r.classes {
		if target == c {
			return true
		}
	}
	return false
}

func refuse(cause error, format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...), classes: []error{ErrVerification}, cause: cause}
}

func expired(cause error, file string, at time.Time) error {
	msg := "repository metadata expired"
	if !at.IsZero() {
		msg += " at " + at.UTC().Format(time.RFC3339)
	}
	if file != "" {
		msg = file + ": " + msg
	}
	return &refusal{msg: msg, classes: []error{ErrExpired, ErrVerification}, cause: cause}
}

// transportError is an error of the network or the server's HTTP status,
// raised by our fetcher; go-tuf passes it through.
type transportError struct {
	url    string
	status int // 0 when the request did not get a response
	err    error
}

func (e *transportError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("fetching %s: HTTP %d", e.url, e.status)
	}
	return fmt.Sprintf("fetching %s: %v", e.url, e.err)
}

// Unwrap gives go-tuf the *metadata.ErrDownloadHTTP it looks for (a 404 of
// the next root version ends the root walk) and callers the cause.
func (e *transportError) Unwrap() error {
	if e.status != 0 {
		return &metadata.ErrDownloadHTTP{StatusCode: e.status, URL: e.url}
	}
	return e.err
}

var (
	thresholdRE = regexp.MustCompile(`got (\d+), want (\d+)`)
	rollbackRE  = regexp.MustCompile(`new (\w+) version (\d+) must be >= (\d+)`)
	versionRE   = regexp.MustCompile(`expected (\S+) version (\d+), got (\d+)`)
	expiredRE   = regexp.MustCompile(`(root|timestamp|snapshot)\.json is expired|new (\S+) is expired`)
)

// explain turns an error of go-tuf's updater into one line naming the file
// being verified (file, the last one fetched) and what was wrong, and
// classifies it: verification, expiry, or transport/local (unchanged).
func explain(err error, file string, up *updater.Updater, lastBody []byte) error {
	var te *transportError
	var pe *fs.PathError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("refreshing metadata: %w", err)
	case errors.As(err, &te):
		return fmt.Errorf("refreshing metadata: %w", err)
	case errors.As(err, &pe):
		return fmt.Errorf("refreshing metadata: %w", err)
	}
	var (
		exp      *metadata.ErrExpiredMetadata
		unsigned *metadata.ErrUnsignedMetadata
		version  *metadata.ErrBadVersionNumber
		hash     *metadata.ErrLengthOrHashMismatch
		length   *metadata.ErrDownloadLengthMismatch
		repo     *metadata.ErrRepository
	)
	switch {
	case errors.As(err, &exp):
		m := expiredRE.FindStringSubmatch(exp.Msg)
		role := ""
		if m != nil {
			role = m[1] + m[2]
		}
		return expired(err, role+".json", expiryOf(up, role, lastBody))
	case errors.As(err, &unsigned):
		if m := thresholdRE.FindStringSubmatch(unsigned.Msg); m != nil {
			return refuse(err, "%s: signature threshold not met (%s of %s required signatures valid)", file, m[1], m[2])
		}
		return refuse(err, "%s: signature threshold not met", file)
	case errors.As(err, &version):
		if m := rollbackRE.FindStringSubmatch(version.Msg); m != nil {
			return refuse(err, "rollback: %s version %s < trusted %s", m[1], m[2], m[3])
		}
		if m := versionRE.FindStringSubmatch(version.Msg); m != nil {
			return refuse(err, "%s: version %s, expected %s", file, m[3], m[2])
		}
		return refuse(err, "%s: unexpected version: %s", file, version.Msg)
	case errors.As(err, &hash):
		return refuse(err, "%s: %s", file, hash.Msg)
	case errors.As(err, new(*lengthError)):
		return refuse(err, "%s: %v", file, err)
	case errors.As(err, &length):
		return refuse(err, "%s: larger than the trusted or allowed length", file)
	case errors.As(err, &repo):
		return refuse(err, "%s: %s", file, repo.Msg)
	}
	// What remains comes from decoding what the server sent (bad JSON,
	// wrong type, unknown key type): the repository's fault.
	return refuse(err, "%s: malformed metadata: %s", file, strings.ReplaceAll(err.Error(), "\n", "; "))
}

// expiryOf finds the expiry time of role, in the trusted set when go-tuf
// loaded it before checking its expiry, else in the last file fetched.
func expiryOf(up *updater.Updater, role string, lastBody []byte) time.Time {
	if up != nil {
		ts := up.GetTrustedMetadataSet()
		switch role {
		case metadata.ROOT:
			if ts.Root != nil {
				return ts.Root.Signed.Expires
			}
		case metadata.TIMESTAMP:
			if ts.Timestamp != nil {
				return ts.Timestamp.Signed.Expires
			}
		case metadata.SNAPSHOT:
			if ts.Snapshot != nil {
				return ts.Snapshot.Signed.Expires
			}
		}
	}
	if t, err := metadata.Targets().FromBytes(lastBody); err == nil {
		return t.Signed.Expires
	}
	return time.Time{}
}

package workload

import (
	"fmt"
	"strconv"
	"strings"
)

// Networks a container can have.
const (
	NetworkHost = "host" // the device's network namespace (the default)
	NetworkNone = "none" // a namespace of its own with only loopback
)

// NetworkMode is Network with its default applied.
func (c *Container) NetworkMode() string {
	if c.Network == "" {
		return NetworkHost
	}
	return c.Network
}

// UserIDs parses User: ok is false when User is empty (keep the image's
// user). GID defaults to UID.
func (c *Container) UserIDs() (uid, gid uint32, ok bool, err error) {
	if c.User == "" {
		return 0, 0, false, nil
	}
	u, g, hasGID := strings.Cut(c.User, ":")
	uid, err = parseID(u)
	if err != nil {
		return 0, 0, false, err
	}
	gid = uid
	if hasGID {
		if gid, err = parseID(g); err != nil {
			return 0, 0, false, err
		}
	}
	return uid, gid, true, nil
}

// maxID is the largest valid user or group id (2^32-1 is "no id").
const maxID = 1<<32 - 2

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID || s != strconv.FormatUint(n, 10) {
		return 0, fmt.Errorf("bad id %q", s)
	}
	return uint32(n), nil
}

// validateIsolation checks the isolation options.
func (c *Container) validateIsolation() error {
	switch c.Network {
	case "", NetworkHost, NetworkNone:
	default:
		return &FieldError{Field: "network", Msg: fmt.Sprintf("expected host or none, got %q", c.Network)}
	}
	if _, _, _, err := c.UserIDs(); err != nil {
		return &FieldError{Field: "user", Msg: fmt.Sprintf("expected a numeric user id like \"1000\" or \"1000:1000\" (at most %d), got %q", maxID, c.User)}
	}
	return nil
}

// hasControl says whether s holds a control character (NUL, newline …),
// which no path of a mount may hold.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

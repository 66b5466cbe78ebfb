package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/plumb-os/plumb/format/config"
)

// defaultCheckTimeout bounds a check whose config gives none.
const defaultCheckTimeout = 30 * time.Second

// HealthError is a failed health check: which one and why.
type HealthError struct {
	Check string // "data partition", "command /bin/true", …
	Err   error
}

func (e *HealthError) Error() string { return "health check " + e.Check + ": " + e.Err.Error() }
func (e *HealthError) Unwrap() error { return e.Err }

// Check runs the built-in check (the data partition is mounted: plumbd
// itself running is the other) and then the configured checks in order. It
// returns the first failure as a *HealthError.
func Check(ctx context.Context, dataMounted bool, checks []config.HealthCheck) error {
	if !dataMounted {
		return &HealthError{Check: "data partition", Err: errors.New("/data is not mounted")}
	}
	for _, c := range checks {
		timeout := time.Duration(c.Timeout)
		if timeout <= 0 {
			timeout = defaultCheckTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		name, err := runCheck(cctx, c)
		cancel()
		if err != nil {
			return &HealthError{Check: name, Err: err}
		}
	}
	return nil
}

func runCheck(ctx context.Context, c config.HealthCheck) (string, error) {
	switch {
	case c.Command != "":
		name := "command " + c.Command
		out, err := exec.CommandContext(ctx, "/bin/sh", "-c", c.Command).CombinedOutput()
		if ctx.Err() != nil {
			return name, fmt.Errorf("no answer within its timeout")
		}
		if err != nil {
			return name, fmt.Errorf("%v: %s", err, lastLine(out))
		}
		return name, nil
	case c.File != "":
		name := "file " + c.File
		for {
			if _, err := os.Stat(c.File); err == nil {
				return name, nil
			}
			select {
			case <-ctx.Done():
				return name, fmt.Errorf("does not exist")
			case <-time.After(200 * time.Millisecond):
			}
		}
	case c.URL != "":
		name := "url " + c.URL
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
		if err != nil {
			return name, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return name, err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return name, fmt.Errorf("answered %s", resp.Status)
		}
		return name, nil
	}
	return "empty check", errors.New("expected one of command, file, url")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

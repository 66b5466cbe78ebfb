package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/plumb-os/plumb/format/config"
)

// Hook output kept: the log gets up to maxHookOutput bytes, status and
// the failure reason the last maxHookTail.
const (
	maxHookOutput = 64 << 10
	maxHookTail   = 1 << 10
)

// hookPath is the PATH a hook runs with (its whole environment is listed
// in docs/hooks.md).
const hookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HookError is a hook that failed: it is the reason a release is
// discarded or rolled back.
type HookError struct {
	Stage, Path string
	Err         error
	Output      string // the tail of its output
}

func (e *HookError) Error() string {
	s := fmt.Sprintf("%s hook %s failed: %v", e.Stage, e.Path, e.Err)
	if e.Output != "" {
		s += ": output: " + strings.ReplaceAll(strings.TrimSpace(e.Output), "\n", " | ")
	}
	return s
}

func (e *HookError) Unwrap() error { return e.Err }

// CheckHook makes sure a hook can run: it exists, is a regular file and is
// executable. The error is one line naming the stage and the path.
func CheckHook(stage string, h *config.Hook) error {
	fi, err := os.Stat(h.Run)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &HookError{Stage: stage, Path: h.Run, Err: errors.New("missing: no such file")}
	case err != nil:
		return &HookError{Stage: stage, Path: h.Run, Err: err}
	case !fi.Mode().IsRegular():
		return &HookError{Stage: stage, Path: h.Run, Err: fmt.Errorf("expected an executable file, got %s", fi.Mode().Type())}
	case fi.Mode().Perm()&0o111 == 0:
		return &HookError{Stage: stage, Path: h.Run, Err: fmt.Errorf("not executable (mode %04o)", fi.Mode().Perm())}
	}
	return nil
}

// runHook runs the hook of stage named in hooks, if any, with a clean
// environment (PATH, PLUMB_STAGE and env), its timeout, and its output
// (stdout and stderr) to the log and to State.Hook. It returns a
// *HookError when the hook is missing, not executable, fails or times
// out.
func (a *Agent) runHook(ctx context.Context, hooks *config.Hooks, stage, version string, env ...string) error {
	h := hooks.Stage(stage)
	if h == nil {
		return nil
	}
	log := a.log().With("stage", stage, "hook", h.Run, "version", version)
	res := &HookResult{Stage: stage, Path: h.Run, Version: version, Time: time.Now().UTC()}
	a.state.Hook = res
	err := CheckHook(stage, h)
	if err == nil {
		var out string
		out, err = execHook(ctx, stage, h, env)
		res.Output = tail(out, maxHookTail)
		if err != nil {
			err = &HookError{Stage: stage, Path: h.Run, Err: err, Output: res.Output}
		}
		log.Info("hook ran", "output", out, "ok", err == nil)
	}
	if err != nil {
		res.Error = err.Error()
		log.Error("hook failed", "err", err)
	}
	if serr := a.save(); serr != nil {
		log.Warn("saving the hook's result", "err", serr)
	}
	return err
}

func execHook(ctx context.Context, stage string, h *config.Hook, env []string) (string, error) {
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = config.DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Run)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=" + hookPath, "PLUMB_STAGE=" + stage}, env...)
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, killed whole at the timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	return out.String(), err
}

// capped keeps the first maxHookOutput bytes written.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxHookOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

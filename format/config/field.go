package config

import (
	"fmt"
	"path"
	"regexp"
	"time"
)

// Install policies (Config.Install): install a verified release at once,
// download it and wait for an approval, or install only inside a daily
// window "HH:MM-HH:MM" (UTC).
const (
	InstallAuto         = "auto"
	InstallDownloadOnly = "download-only"
)

// Hook stages.
const (
	StagePreInstall  = "pre-install"  // running system, before the slot is written
	StagePostInstall = "post-install" // running system, new slot mounted read-only, before the reboot
	StageFirstBoot   = "first-boot"   // new release, before the commit
	StageRollback    = "rollback"     // previous release, after it got control back from a failed one
)

// Hooks names an executable per stage (docs/hooks.md); nil: none.
type Hooks struct {
	PreInstall  *Hook `json:"pre-install,omitempty"`
	PostInstall *Hook `json:"post-install,omitempty"`
	FirstBoot   *Hook `json:"first-boot,omitempty"`
	Rollback    *Hook `json:"rollback,omitempty"`
}

// Hook is one executable with its timeout.
type Hook struct {
	Run     string   `json:"run"`               // absolute path on the device
	Timeout Duration `json:"timeout,omitempty"` // default DefaultHookTimeout
}

// Defaults of the field settings.
const (
	DefaultHookTimeout = 5 * time.Minute
	DefaultLockMaxHold = time.Hour
)

// Stage returns the hook of stage, nil when none.
func (h *Hooks) Stage(stage string) *Hook {
	if h == nil {
		return nil
	}
	switch stage {
	case StagePreInstall:
		return h.PreInstall
	case StagePostInstall:
		return h.PostInstall
	case StageFirstBoot:
		return h.FirstBoot
	case StageRollback:
		return h.Rollback
	}
	return nil
}

// InstallWindow parses Install: ok is false for auto and download-only.
func (c *Config) InstallWindow() (RebootPolicy, bool) {
	switch c.Install {
	case "", InstallAuto, InstallDownloadOnly:
		return RebootPolicy{}, false
	}
	p, err := ParseReboot(c.Install)
	return p, err == nil && p.Mode == "window"
}

// LockMaxHoldTime is how long an application lock may defer an update.
func (c *Config) LockMaxHoldTime() time.Duration {
	if c.LockMaxHold > 0 {
		return time.Duration(c.LockMaxHold)
	}
	return DefaultLockMaxHold
}

var groupRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// validateField checks install, group, hooks and lock_max_hold.
func (c *Config) validateField() error {
	switch c.Install {
	case "", InstallAuto, InstallDownloadOnly:
	default:
		if p, err := ParseReboot(c.Install); err != nil || p.Mode != "window" {
			return fmt.Errorf(`agent config: install: expected "auto", "download-only" or a window like "02:00-04:00" (UTC), got %q`, c.Install)
		}
	}
	if c.Group != "" && !groupRE.MatchString(c.Group) {
		return fmt.Errorf("agent config: group: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got %q", c.Group)
	}
	if c.LockMaxHold < 0 {
		return fmt.Errorf("agent config: lock_max_hold: expected a duration >= 0, got %s", time.Duration(c.LockMaxHold))
	}
	for _, s := range []string{StagePreInstall, StagePostInstall, StageFirstBoot, StageRollback} {
		h := c.Hooks.Stage(s)
		if h == nil {
			continue
		}
		if !path.IsAbs(h.Run) || path.Clean(h.Run) != h.Run {
			return fmt.Errorf("agent config: hooks.%s.run: expected an absolute clean path on the device, got %q", s, h.Run)
		}
		if h.Timeout < 0 {
			return fmt.Errorf("agent config: hooks.%s.timeout: expected a duration >= 0, got %s", s, time.Duration(h.Timeout))
		}
	}
	return nil
}

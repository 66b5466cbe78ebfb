package recipe

import "time"

// Hooks names an executable on the device per update stage
// (docs/hooks.md).
type Hooks struct {
	PreInstall  *Hook `yaml:"pre-install"`  // running system, before the slot is written
	PostInstall *Hook `yaml:"post-install"` // running system, new slot mounted read-only, before the reboot
	FirstBoot   *Hook `yaml:"first-boot"`   // the new release, before its commit
	Rollback    *Hook `yaml:"rollback"`     // the previous release, after a failed one rolled back
}

// Hook is one executable and its timeout (default 5m).
type Hook struct {
	Run     string        `yaml:"run"`
	Timeout time.Duration `yaml:"timeout"`
}

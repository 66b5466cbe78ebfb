package builder

import (
	"github.com/plumb-os/plumb/builder/recipe"
	"github.com/plumb-os/plumb/format/config"
)

// fieldConfig copies the recipe's field settings (install policy, group,
// hooks, lock hold time) into the agent configuration.
func fieldConfig(a *recipe.Agent, c *config.Config) {
	c.Install, c.Group, c.LockMaxHold = a.Install, a.Group, config.Duration(a.LockMaxHold)
	hook := func(h *recipe.Hook) *config.Hook {
		if h == nil {
			return nil
		}
		return &config.Hook{Run: h.Run, Timeout: config.Duration(h.Timeout)}
	}
	h := a.Hooks
	if h.PreInstall != nil || h.PostInstall != nil || h.FirstBoot != nil || h.Rollback != nil {
		c.Hooks = &config.Hooks{PreInstall: hook(h.PreInstall), PostInstall: hook(h.PostInstall), FirstBoot: hook(h.FirstBoot), Rollback: hook(h.Rollback)}
	}
}

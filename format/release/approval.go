package release

import (
	"fmt"
	"regexp"
	"slices"
)

// Approval is the operator's consent to install a release on devices whose
// policy is download-only (plumb approve). It is part of the release
// facts, so it is signed by the targets role like the rest.
type Approval struct {
	All     bool     `json:"all,omitempty"`     // every device
	Groups  []string `json:"groups,omitempty"`  // devices whose agent config names one of these groups
	Devices []string `json:"devices,omitempty"` // device ids (plumbd status: device.id)
}

var (
	groupRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	deviceIDRE = regexp.MustCompile(`^[a-z0-9]{16}$`)
)

// Validate checks the approval.
func (a *Approval) Validate() error {
	if !a.All && len(a.Groups) == 0 && len(a.Devices) == 0 {
		return fmt.Errorf("release facts: approved: expected all, groups or devices, got none")
	}
	for i, g := range a.Groups {
		if !groupRE.MatchString(g) {
			return fmt.Errorf("release facts: approved.groups[%d]: expected a group name like \"site-a\", got %q", i, g)
		}
	}
	for i, d := range a.Devices {
		if !deviceIDRE.MatchString(d) {
			return fmt.Errorf("release facts: approved.devices[%d]: expected a 16-character device id, got %q", i, d)
		}
	}
	return nil
}

// Covers reports whether the approval names the device id or its group.
func (a *Approval) Covers(deviceID, group string) bool {
	if a == nil {
		return false
	}
	return a.All || slices.Contains(a.Devices, deviceID) || group != "" && slices.Contains(a.Groups, group)
}

package config

import (
	"fmt"
	"time"
)

// Reboot policies: reboot as soon as a release is installed, only when
// someone reboots the device, or inside a daily maintenance window given as
// "HH:MM-HH:MM" in the device's UTC clock (it may wrap midnight).
const (
	RebootNow    = "now"
	RebootManual = "manual"
)

// RebootPolicy is a parsed reboot setting.
type RebootPolicy struct {
	Mode       string // RebootNow, RebootManual, or "window"
	Start, End int    // minutes after midnight UTC, for a window
}

// ParseReboot parses "now", "manual" or "HH:MM-HH:MM". The empty string is
// "now".
func ParseReboot(s string) (RebootPolicy, error) {
	switch s {
	case "", RebootNow:
		return RebootPolicy{Mode: RebootNow}, nil
	case RebootManual:
		return RebootPolicy{Mode: RebootManual}, nil
	}
	var h1, m1, h2, m2 int
	var rest string
	n, _ := fmt.Sscanf(s, "%d:%d-%d:%d%s", &h1, &m1, &h2, &m2, &rest)
	if n != 4 || len(s) != 11 || h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59 || h1 < 0 || h2 < 0 || m1 < 0 || m2 < 0 {
		return RebootPolicy{}, fmt.Errorf(`expected "now", "manual" or a window like "02:00-04:00" (UTC), got %q`, s)
	}
	p := RebootPolicy{Mode: "window", Start: h1*60 + m1, End: h2*60 + m2}
	if p.Start == p.End {
		return RebootPolicy{}, fmt.Errorf("reboot window %q is empty: start and end are the same", s)
	}
	return p, nil
}

// Wait returns how long to wait from now until a reboot is allowed: 0 for
// "now" or inside the window, -1 for "manual".
func (p RebootPolicy) Wait(now time.Time) time.Duration {
	switch p.Mode {
	case RebootManual:
		return -1
	case "window":
	default:
		return 0
	}
	now = now.UTC()
	mins := now.Hour()*60 + now.Minute()
	inside := p.Start < p.End && mins >= p.Start && mins < p.End ||
		p.Start > p.End && (mins >= p.Start || mins < p.End)
	if inside {
		return 0
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	next := midnight.Add(time.Duration(p.Start) * time.Minute)
	if !next.After(now) {
		next = next.Add(24 * time.Hour)
	}
	return next.Sub(now)
}

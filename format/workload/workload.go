// Package workload owns the workload manifest: the list of containers a
// device runs, written by application owners as YAML and published in the
// update repository as the JSON target apps/<group>/workloads.json, signed
// by the delegated TUF role "apps". The format is specified in
// WORKLOADS.md.
//
// ParseYAML reads the owner's file (strictly, errors as one line with the
// file and line); Encode writes the repository's JSON; Decode reads it on
// the device. Every path goes through Validate.
package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Restart policies.
const (
	RestartAlways    = "always"     // restart whenever the task exits (the default)
	RestartOnFailure = "on-failure" // restart when it exits with a status other than 0
	RestartNever     = "never"      // leave it stopped
)

// Role is the delegated TUF role that signs workload manifests, and
// TargetPrefix the target paths it may sign.
const (
	Role         = "apps"
	TargetPrefix = "apps/"
	FileName     = "workloads.json"
)

// Limits of the format, so that a manifest stays small.
const (
	MaxContainers = 64
	MaxSize       = 1 << 20 // bytes of JSON accepted by Decode
)

// Manifest is one group's workloads.
type Manifest struct {
	Containers []Container `json:"containers"`
}

// Container is one container the device keeps running.
type Container struct {
	// Name is unique in the manifest: [a-z0-9][a-z0-9_.-]{0,62}.
	Name string `json:"name"`
	// Image is an OCI reference pinned by digest: NAME@sha256:HEX. It is
	// the image's manifest digest: the device runs exactly that image.
	Image string `json:"image"`
	// Target, when set, is the TUF target (apps/<group>/<file>.tar) of an
	// OCI image archive holding Image; otherwise the device pulls Image
	// from its registry.
	Target string `json:"target,omitempty"`
	// Command replaces the image's entrypoint and command when not empty.
	Command []string `json:"command,omitempty"`
	// Env is added to the image's environment.
	Env map[string]string `json:"env,omitempty"`
	// Mounts bind directories of the data partition into the container.
	Mounts []Mount `json:"mounts,omitempty"`
	// Restart is always (default), on-failure or never.
	Restart string `json:"restart,omitempty"`
	// Health, when set, is run inside the container every Interval.
	Health *Health `json:"health,omitempty"`
}

// Mount binds DATA/apps/<group>/<Source> (created if missing) at Target.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readonly,omitempty"`
}

// Health is an exec health check.
type Health struct {
	Command  []string `json:"command"`
	Interval Duration `json:"interval,omitempty"` // default 30s
	// Retries is how many failures in a row make the container unhealthy
	// (and restart it unless Restart is never). Default 3.
	Retries int `json:"retries,omitempty"`
}

// Defaults.
const (
	DefaultInterval = 30 * time.Second
	DefaultRetries  = 3
)

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration like \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration like \"30s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	groupRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	refRE    = regexp.MustCompile(`^[a-z0-9]+(?:[._:/-][a-z0-9]+)*$`)
)

// ValidGroup checks a group name (a path element of the target).
func ValidGroup(g string) error {
	if !groupRE.MatchString(g) {
		return fmt.Errorf("group: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got %q", g)
	}
	return nil
}

// TargetPath is the TUF target of group's manifest.
func TargetPath(group string) string { return TargetPrefix + group + "/" + FileName }

// SplitImage splits NAME@sha256:HEX into the name and the digest.
func SplitImage(ref string) (name, digest string, err error) {
	name, digest, ok := strings.Cut(ref, "@")
	if !ok || !digestRE.MatchString(digest) || !refRE.MatchString(name) {
		return "", "", fmt.Errorf("expected an image reference pinned by digest like \"example.com/app@sha256:<64 hex>\", got %q", ref)
	}
	return name, digest, nil
}

// Digest is the image's pinned manifest digest ("sha256:…"); "" when
// Image is not valid.
func (c *Container) Digest() string {
	_, d, _ := SplitImage(c.Image)
	return d
}

// FieldError is a problem with one field; Index is the container's
// position (-1 for the manifest itself).
type FieldError struct {
	Index int
	Field string // path below the container, e.g. "mounts[1].target"
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Index < 0 {
		return e.Field + ": " + e.Msg
	}
	f := fmt.Sprintf("containers[%d]", e.Index)
	if e.Field != "" {
		f += "." + e.Field
	}
	return f + ": " + e.Msg
}

// Validate checks the manifest; group, when not empty, is the group whose
// targets archives must be in.
func (m *Manifest) Validate(group string) error {
	if len(m.Containers) > MaxContainers {
		return &FieldError{Index: -1, Field: "containers", Msg: fmt.Sprintf("expected at most %d containers, got %d", MaxContainers, len(m.Containers))}
	}
	seen := map[string]int{}
	for i := range m.Containers {
		c := &m.Containers[i]
		if first, dup := seen[c.Name]; dup {
			return &FieldError{Index: i, Field: "name", Msg: fmt.Sprintf("expected a unique name, got %q again (first in containers[%d])", c.Name, first)}
		}
		seen[c.Name] = i
		if err := c.validate(group); err != nil {
			e := err.(*FieldError)
			e.Index = i
			return e
		}
	}
	return nil
}

func (c *Container) validate(group string) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(c.Name) {
		return bad("name", "expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got %q", c.Name)
	}
	if _, _, err := SplitImage(c.Image); err != nil {
		return bad("image", "%v", err)
	}
	if c.Target != "" {
		dir, file := path.Split(c.Target)
		g := strings.TrimSuffix(strings.TrimPrefix(dir, TargetPrefix), "/")
		if !strings.HasPrefix(dir, TargetPrefix) || ValidGroup(g) != nil || !nameRE.MatchString(file) || !strings.HasSuffix(file, ".tar") || path.Clean(c.Target) != c.Target {
			return bad("target", "expected apps/<group>/<file>.tar, got %q", c.Target)
		}
		if group != "" && g != group {
			return bad("target", "expected a target of group %q (apps/%s/…), got %q", group, group, c.Target)
		}
	}
	for i, a := range c.Command {
		if a == "" && i == 0 {
			return bad("command[0]", "expected a program, got an empty string")
		}
	}
	for k := range c.Env {
		if !envKeyRE.MatchString(k) {
			return bad("env", "expected variable names like FOO_BAR, got %q", k)
		}
	}
	targets := map[string]bool{}
	for i, m := range c.Mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		if m.Source == "" || path.IsAbs(m.Source) || path.Clean(m.Source) != m.Source || m.Source == ".." || strings.HasPrefix(m.Source, "../") {
			return bad(f+".source", "expected a relative path inside the data partition's apps directory, got %q", m.Source)
		}
		if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target || m.Target == "/" {
			return bad(f+".target", "expected an absolute path in the container other than /, got %q", m.Target)
		}
		if targets[m.Target] {
			return bad(f+".target", "expected each target once, got %q twice", m.Target)
		}
		targets[m.Target] = true
	}
	switch c.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return bad("restart", "expected always, on-failure or never, got %q", c.Restart)
	}
	if h := c.Health; h != nil {
		if len(h.Command) == 0 || h.Command[0] == "" {
			return bad("health.command", "expected a command to run in the container, got nothing")
		}
		if h.Interval != 0 && time.Duration(h.Interval) < time.Second {
			return bad("health.interval", "expected at least 1s, got %s", time.Duration(h.Interval))
		}
		if h.Retries < 0 || h.Retries > 100 {
			return bad("health.retries", "expected 0..100, got %d", h.Retries)
		}
	}
	return nil
}

// RestartPolicy is Restart with its default applied.
func (c *Container) RestartPolicy() string {
	if c.Restart == "" {
		return RestartAlways
	}
	return c.Restart
}

// Encode writes the manifest as the repository's JSON (indented, keys
// of Env sorted, a final newline).
func (m *Manifest) Encode() ([]byte, error) {
	mm := *m
	if mm.Containers == nil {
		mm.Containers = []Container{}
	}
	b, err := json.MarshalIndent(mm, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding workloads: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode reads the repository's JSON strictly (unknown keys are errors)
// and validates it for group.
func Decode(data []byte, group string) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s: %d bytes, expected at most %d", FileName, len(data), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: expected one JSON object, found more data", FileName)
	}
	if err := m.Validate(group); err != nil {
		return nil, fmt.Errorf("%s: %w", FileName, err)
	}
	return &m, nil
}

// SpecHash identifies everything about c that needs a new container when
// it changes (everything but the health check).
func (c *Container) SpecHash() string {
	cc := *c
	cc.Health = nil
	cc.Restart = ""
	b, _ := json.Marshal(cc)
	return fmt.Sprintf("%x", sha256Sum(b))[:16]
}

// Names lists the container names in order.
func (m *Manifest) Names() []string {
	out := make([]string, len(m.Containers))
	for i, c := range m.Containers {
		out[i] = c.Name
	}
	return slices.Clip(out)
}

// String is the Go duration string ("30s").
func (d Duration) String() string { return time.Duration(d).String() }

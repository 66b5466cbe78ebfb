// Package config owns plumbd's configuration file, /etc/plumb/agent.json:
// the builder writes it from the recipe's agent section, the agent reads it
// at start. Both sides use this package's types.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// Path is where the builder puts the file in the root filesystem.
const Path = "/etc/plumb/agent.json"

// Files the builder copies next to the configuration.
const (
	RootPath = "/etc/plumb/root.json" // trusted TUF root
	CAPath   = "/etc/plumb/ca.pem"    // CA bundle for the repository's TLS
)

// Commit policies.
const (
	CommitHealth   = "health"   // commit a trial slot after its health checks pass
	CommitAttested = "attested" // and after its measured boot matches the release's reference values
)

// Config is plumbd's configuration.
type Config struct {
	Repository string        `json:"repository"`          // base URL of the TUF repository
	Root       string        `json:"root"`                // path of the trusted root.json on the device
	CA         string        `json:"ca,omitempty"`        // path of a PEM CA bundle on the device
	Hardware   string        `json:"hardware"`            // which releases apply
	Group      string        `json:"group,omitempty"`     // the device's group: rollout waves and operator approvals target it; "" none
	Channel    string        `json:"channel"`             // which channel to follow
	Poll       Duration      `json:"poll"`                // time between update checks
	Commit     string        `json:"commit"`              // "health" or "attested"
	Reboot     string        `json:"reboot,omitempty"`    // "now" (default), "manual" or "HH:MM-HH:MM" (UTC)
	Report     string        `json:"report,omitempty"`    // status report base URL; "" the repository's, "off" none
	Health     []HealthCheck `json:"health,omitempty"`    // extra checks after a trial boot
	DataDir    string        `json:"data_dir,omitempty"`  // agent state; default /data/plumb
	Link       Link          `json:"link,omitzero"`       // the network between device and repository
	Workloads  *Workloads    `json:"workloads,omitempty"` // containers to run; nil: none
	// JoinToken is the organization's join credential: the fleet service
	// adds a device it does not know to the token's organization (and
	// lists one without a token as pending).
	JoinToken string `json:"join_token,omitempty"`
	// Wake, when set, holds the optional wake-up channel to the fleet
	// service (docs/wake.md): a held HTTPS stream that says when the
	// repository's timestamp changed, so the agent polls at once.
	Wake *Wake `json:"wake,omitempty"`

	// Field operations (field.go).
	Install     string   `json:"install,omitempty"`       // "auto" (default), "download-only" or "HH:MM-HH:MM" (UTC)
	Hooks       *Hooks   `json:"hooks,omitempty"`         // executables run around an update
	LockMaxHold Duration `json:"lock_max_hold,omitempty"` // how long an application lock may defer an update; default 1h
}

// Workloads configures the containers plumbd runs through containerd: the
// manifest apps/<Group>/workloads.json, signed by the delegated role apps.
type Workloads struct {
	Group      string `json:"group"`
	Containerd string `json:"containerd,omitempty"` // socket; default /run/containerd/containerd.sock
	Namespace  string `json:"namespace,omitempty"`  // containerd namespace; default plumb
	DataDir    string `json:"data_dir,omitempty"`   // mount sources live in DataDir/<group>/; default /data/apps
}

// Wake configures the wake-up channel. It goes to the report base
// (<report>/v1/devices/<id>/wake) with the device's identity, as status
// reports do. While it is up the agent polls every Poll (a safety net);
// while it is down, every Config.Poll.
type Wake struct {
	Poll Duration `json:"poll,omitempty"` // default DefaultWakePoll
}

// DefaultWakePoll is the time between polls while the wake-up channel is
// up, when Wake.Poll is not set.
const DefaultWakePoll = time.Hour

// PollInterval is Poll or its default.
func (w *Wake) PollInterval() time.Duration {
	if w.Poll == 0 {
		return DefaultWakePoll
	}
	return time.Duration(w.Poll)
}

// Link tunes the agent's connection to the repository for slow, costly or
// filtered links. Zero values keep the fetch client's defaults (1 min
// timeouts, 5 attempts, no cap, proxy from HTTPS_PROXY).
type Link struct {
	Proxy          string   `json:"proxy,omitempty"`           // http://host:port
	RateLimit      int64    `json:"rate_limit,omitempty"`      // bytes per second for downloads
	RequestTimeout Duration `json:"request_timeout,omitempty"` // each metadata request
	IdleTimeout    Duration `json:"idle_timeout,omitempty"`    // a download with no byte for this long is retried
	Attempts       int      `json:"attempts,omitempty"`        // tries per download
}

// HealthCheck is one check after a trial boot: exactly one of Command, File
// and URL.
type HealthCheck struct {
	Command string   `json:"command,omitempty"`
	File    string   `json:"file,omitempty"`
	URL     string   `json:"url,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration like \"5m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration like \"5m\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// Parse decodes and validates a configuration file's content; unknown keys
// are errors.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ReportBase is where status reports go: Report, else the repository; ""
// when reports are off.
func (c *Config) ReportBase() string {
	switch c.Report {
	case "off":
		return ""
	case "":
		return c.Repository
	}
	return c.Report
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Repository != "" {
		u, err := url.Parse(c.Repository)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agent config: repository: expected an http(s) URL, got %q", c.Repository)
		}
	}
	if c.Hardware == "" {
		return fmt.Errorf("agent config: hardware: expected a name, got nothing")
	}
	if c.Poll < Duration(time.Second) {
		return fmt.Errorf("agent config: poll: expected at least 1s, got %s", time.Duration(c.Poll))
	}
	if c.Commit != "health" && c.Commit != "attested" {
		return fmt.Errorf("agent config: commit: expected \"health\" or \"attested\", got %q", c.Commit)
	}
	if l := c.Link; l.Proxy != "" {
		u, err := url.Parse(l.Proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agent config: link.proxy: expected an http:// or https:// URL, got %q", l.Proxy)
		}
	}
	if c.Link.RateLimit < 0 || c.Link.Attempts < 0 || c.Link.RequestTimeout < 0 || c.Link.IdleTimeout < 0 {
		return fmt.Errorf("agent config: link: expected rate_limit, attempts and timeouts >= 0")
	}
	if c.Group != "" {
		if err := workloadGroup(c.Group); err != nil {
			return fmt.Errorf("agent config: %w", err)
		}
	}
	if w := c.Workloads; w != nil {
		if err := workloadGroup(w.Group); err != nil {
			return fmt.Errorf("agent config: workloads.%w", err)
		}
	}
	if c.Report != "" && c.Report != "off" {
		u, err := url.Parse(c.Report)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("agent config: report: expected an http(s) URL or \"off\", got %q", c.Report)
		}
	}
	if w := c.Wake; w != nil {
		if c.ReportBase() == "" {
			return fmt.Errorf("agent config: wake: expected the fleet service (report not \"off\"), got report %q", c.Report)
		}
		if w.Poll != 0 && w.Poll < c.Poll {
			return fmt.Errorf("agent config: wake.poll: expected 0 (default %s) or at least poll (%s), got %s", DefaultWakePoll, time.Duration(c.Poll), time.Duration(w.Poll))
		}
	}
	if err := c.validateField(); err != nil {
		return err
	}
	if _, err := ParseReboot(c.Reboot); err != nil {
		return fmt.Errorf("agent config: reboot: %w", err)
	}
	for i, h := range c.Health {
		n := 0
		for _, s := range []string{h.Command, h.File, h.URL} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("agent config: health[%d]: expected exactly one of command, file, url", i)
		}
	}
	return nil
}

// workloadGroup checks a group name like workload.ValidGroup (config is
// imported by the builder; it does not import the workload package).
func workloadGroup(g string) error {
	ok := len(g) > 0 && len(g) <= 63
	for i, r := range g {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == '-'):
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("group: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got %q", g)
	}
	return nil
}

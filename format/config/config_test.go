package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// valid is a configuration that passes Validate; each table case changes
// one thing.
func valid() Config {
	return Config{
		Repository: "https://10.0.2.100/",
		Root:       RootPath,
		Hardware:   "qemu-x86_64",
		Channel:    "stable",
		Poll:       Duration(5 * time.Minute),
		Commit:     "health",
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // "" = valid; else a substring of the error
	}{
		{"valid", func(c *Config) {}, ""},
		{"attested commit", func(c *Config) { c.Commit = "attested" }, ""},
		{"no repository (set later)", func(c *Config) { c.Repository = "" }, ""},
		{"http repository", func(c *Config) { c.Repository = "http://repo.example:8080" }, ""},
		{"poll of exactly 1s", func(c *Config) { c.Poll = Duration(time.Second) }, ""},
		{"one check of each kind", func(c *Config) {
			c.Health = []HealthCheck{{Command: "true"}, {File: "/run/ok"}, {URL: "http://127.0.0.1/healthz", Timeout: Duration(time.Second)}}
		}, ""},
		{"reboot in a window", func(c *Config) { c.Reboot = "02:00-04:00" }, ""},
		{"rollout group", func(c *Config) { c.Group = "canary" }, ""},
		{"bad rollout group", func(c *Config) { c.Group = "Canary Devices" },
			`agent config: group: expected [a-z0-9][a-z0-9_.-]* (at most 63 characters), got "Canary Devices"`},
		{"manual reboot", func(c *Config) { c.Reboot = "manual" }, ""},
		{"bad reboot", func(c *Config) { c.Reboot = "sometimes" }, "agent config: reboot: "},
		{"ftp repository", func(c *Config) { c.Repository = "ftp://repo.example/" },
			`agent config: repository: expected an http(s) URL, got "ftp://repo.example/"`},
		{"repository without host", func(c *Config) { c.Repository = "https:///x" },
			`agent config: repository: expected an http(s) URL, got "https:///x"`},
		{"repository not a URL", func(c *Config) { c.Repository = "http://[::1" },
			`agent config: repository: expected an http(s) URL, got "http://[::1"`},
		{"no hardware", func(c *Config) { c.Hardware = "" },
			"agent config: hardware: expected a name, got nothing"},
		{"poll too short", func(c *Config) { c.Poll = Duration(500 * time.Millisecond) },
			"agent config: poll: expected at least 1s, got 500ms"},
		{"poll missing", func(c *Config) { c.Poll = 0 },
			"agent config: poll: expected at least 1s, got 0s"},
		{"wake without reports", func(c *Config) { c.Wake, c.Report = &Wake{}, "off" },
			`agent config: wake: expected the fleet service (report not "off"), got report "off"`},
		{"wake poll under poll", func(c *Config) { c.Wake = &Wake{Poll: Duration(time.Minute)} },
			"agent config: wake.poll: expected 0 (default 1h0m0s) or at least poll (5m0s), got 1m0s"},
		{"unknown commit", func(c *Config) { c.Commit = "always" },
			`agent config: commit: expected "health" or "attested", got "always"`},
		{"health check with nothing", func(c *Config) { c.Health = []HealthCheck{{Command: "true"}, {}} },
			"agent config: health[1]: expected exactly one of command, file, url"},
		{"health check with two", func(c *Config) { c.Health = []HealthCheck{{Command: "true", File: "/x"}} },
			"agent config: health[0]: expected exactly one of command, file, url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n")):
				t.Errorf("Validate() = %v, want one line starting %q", err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = parses; else a substring of the error
	}{
		{`{"repository":"https://r/","root":"/etc/plumb/root.json","hardware":"h","channel":"stable","poll":"5m","commit":"health"}`, ""},
		{`{"hardware":"h","poll":"1h","commit":"attested","health":[{"url":"http://x/","timeout":"3s"}],"data_dir":"/data/p"}`, ""},
		{`{"hardware":"h","poll":"5m","commit":"health","colour":"red"}`, `agent config: json: unknown field "colour"`},
		{`{"hardware":"h","poll":"often","commit":"health"}`, `expected a duration like "5m", got "often"`},
		{`{"hardware":"h","poll":5,"commit":"health"}`, `expected a duration like "5m", got 5`},
		{`{"hardware":"h","poll":"5m","commit":"health"`, "agent config: unexpected EOF"},
		{`{"hardware":"h","poll":"5m"}`, `agent config: commit: expected "health" or "attested", got ""`},
		{``, "agent config: EOF"},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.in))
		switch {
		case tt.want == "" && (err != nil || c == nil):
			t.Errorf("Parse(%q) = %v, want a config", tt.in, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

// FuzzParse: Parse never panics, its errors are one line, and what it
// accepts survives a marshal and a parse again unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"repository":"https://10.0.2.100/","root":"/etc/plumb/root.json","ca":"/etc/plumb/ca.pem","hardware":"qemu-x86_64","channel":"stable","poll":"5m","commit":"health"}`))
	f.Add([]byte(`{"hardware":"h","poll":"1h","commit":"attested","health":[{"command":"true"},{"file":"/run/ok"},{"url":"http://x/","timeout":"3s"}],"data_dir":"/data/p"}`))
	f.Add([]byte(`{"hardware":"h","poll":[1,2],"commit":"health"}`))
	f.Add([]byte(`{"hardware":"h","poll":"5m","commit":"health","health":[{}]}`))
	f.Add([]byte(`{"repository":"ftp://x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("Parse(%q): error spans lines: %q", data, err)
			}
			return
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		c2, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v, want the same config", data, err)
		}
		b2, _ := json.Marshal(c2)
		if string(b) != string(b2) {
			t.Errorf("round trip changed the config: %s, then %s", b, b2)
		}
	})
}

package agent

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/format/config"
)

func TestCheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer ok.Close()
	dir := t.TempDir()
	present := filepath.Join(dir, "present")
	os.WriteFile(present, nil, 0o644)
	short := config.Duration(300 * time.Millisecond)

	tests := []struct {
		name   string
		data   bool
		checks []config.HealthCheck
		want   string // "" = healthy
	}{
		{"no data partition", false, nil, "health check data partition: /data is not mounted"},
		{"nothing extra", true, nil, ""},
		{"command ok", true, []config.HealthCheck{{Command: "true"}}, ""},
		{"command fails", true, []config.HealthCheck{{Command: "echo broken >&2; exit 3"}}, "health check command echo broken >&2; exit 3: exit status 3: broken"},
		{"command hangs", true, []config.HealthCheck{{Command: "sleep 5", Timeout: short}}, "no answer within its timeout"},
		{"file present", true, []config.HealthCheck{{File: present}}, ""},
		{"file missing", true, []config.HealthCheck{{File: filepath.Join(dir, "absent"), Timeout: short}}, "does not exist"},
		{"url ok", true, []config.HealthCheck{{URL: ok.URL + "/ok"}}, ""},
		{"url 503", true, []config.HealthCheck{{URL: ok.URL + "/fail"}}, "answered 503"},
		{"first failure wins", true, []config.HealthCheck{{Command: "true"}, {Command: "false"}, {File: "/nonexistent"}}, "command false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(t.Context(), tt.data, tt.checks)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check = %v, want healthy", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

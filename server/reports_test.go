package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/report"
)

// TestReports: plumbd's report client posts to the real handler over HTTP
// on 127.0.0.1; the last report of each device is stored as a file and
// served back; bad requests get a 4xx and store nothing.
func TestReports(t *testing.T) {
	r := makeRepo(t)
	dir := filepath.Join(t.TempDir(), "reports")
	s, err := New(Options{Dir: r.dir, CertDir: filepath.Join(t.TempDir(), "tls"), Reports: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	rep := report.New(t.Context(), ts.URL+"/", report.Device{ID: "abcdefgh23456789", PublicKey: []byte{1, 2, 3}}, ts.Client(), nil)
	rep.Send(map[string]any{"update": map[string]any{"phase": "downloading"}}, nil)
	rep.Flush(5 * time.Second)
	rep.Send(map[string]any{"update": map[string]any{"phase": "committed", "version": "2.0.0"}}, nil)
	rep.Flush(5 * time.Second)

	data, err := os.ReadFile(filepath.Join(dir, "abcdefgh23456789.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stored Report
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Device report.Device `json:"device"`
		Status struct {
			Update map[string]string `json:"update"`
		} `json:"status"`
	}
	if err := json.Unmarshal(stored.Report, &body); err != nil {
		t.Fatal(err)
	}
	if stored.ID != "abcdefgh23456789" || body.Status.Update["phase"] != "committed" || !bytes.Equal(body.Device.PublicKey, []byte{1, 2, 3}) || stored.ReceivedAt.IsZero() {
		t.Errorf("stored report = %+v / %+v; want the device's last report (committed)", stored, body)
	}

	get := func(path string) (int, string) {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := get("/v1/devices"); code != 200 || !strings.Contains(b, `"id":"abcdefgh23456789"`) {
		t.Errorf("GET /v1/devices = %d %s", code, b)
	}
	if code, b := get("/v1/devices/abcdefgh23456789"); code != 200 || !strings.Contains(b, `"committed"`) {
		t.Errorf("GET /v1/devices/ID = %d %s", code, b)
	}
	if code, _ := get("/v1/devices/nosuchdevice"); code != 404 {
		t.Errorf("GET unknown device = %d, want 404", code)
	}

	post := func(path, body string) int {
		resp, err := ts.Client().Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, path, body string
		want             int
	}{
		{"id mismatch", "/v1/devices/zzzz/status", `{"device":{"id":"yyyy"},"status":{}}`, 400},
		{"bad id", "/v1/devices/..%2Fescape/status", `{"device":{"id":"../escape"}}`, 404},
		{"upper case id", "/v1/devices/ABC/status", `{"device":{"id":"ABC"}}`, 400},
		{"not json", "/v1/devices/zzzz/status", `nope`, 400},
		{"too large", "/v1/devices/zzzz/status", `{"device":{"id":"zzzz"},"status":"` + strings.Repeat("x", maxReportSize) + `"}`, 413},
		{"get on status", "/v1/devices/zzzz/status", "", 0},
	} {
		if c.want == 0 {
			resp, err := ts.Client().Get(ts.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s: %d, want 405", c.name, resp.StatusCode)
			}
			continue
		}
		if got := post(c.path, c.body); got != c.want {
			t.Errorf("%s: POST = %d, want %d", c.name, got, c.want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("reports dir holds %d files after the bad requests, want 1", len(ents))
	}

	// Without a reports directory the endpoint does not exist.
	s2, err := New(Options{Dir: r.dir, CertDir: filepath.Join(t.TempDir(), "tls")})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(s2.Handler())
	defer ts2.Close()
	resp, err := ts2.Client().Post(ts2.URL+"/v1/devices/abc/status", "application/json", strings.NewReader(`{"device":{"id":"abc"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		t.Error("report accepted without a reports directory")
	}
}

// A server that does not answer never blocks Send.
func TestReportSendDoesNotBlock(t *testing.T) {
	hang := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer ts.Close()
	defer close(hang)
	rep := report.New(t.Context(), ts.URL, report.Device{ID: "x"}, ts.Client(), nil)
	start := time.Now()
	for i := 0; i < 100; i++ {
		rep.Send(i, nil)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 Sends to a hanging server took %s", d)
	}
	if report.New(t.Context(), "off", report.Device{ID: "x"}, ts.Client(), nil) != nil {
		t.Error(`report "off" gave a reporter`)
	}
}

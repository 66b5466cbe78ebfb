package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/server/store"
)

// TestDeviceReports: a device with the join token joins on its first
// signed report; its reports become history (install, update phases,
// commit, rollback with its reason, bad release) and release outcomes;
// bad requests get one-line 4xx errors and change nothing.
func TestDeviceReports(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		fs := newFleetServer(t, dsn, FleetOptions{}, nil, "")
		ctx := context.Background()
		d := fs.device(fs.join)

		steps := []struct {
			status, install any
		}{
			{map[string]any{"phase": "installing"}, map[string]any{"phase": "downloading", "version": "1.0.0"}},
			{map[string]any{"phase": "installing"}, map[string]any{"phase": "done", "version": "1.0.0"}},
			{map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "idle"}}, nil},
			{map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "downloading", "version": "2.0.0"}}, nil},
			{map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "rebooting", "version": "2.0.0"}}, nil},
			{map[string]any{"release": map[string]any{"version": "1.0.0", "hardware": "qemu"}, "update": map[string]any{"phase": "idle",
				"event": "rolled back from 2.0.0: health check /bin/false failed", "bad": map[string]string{"2.0.0": "health check /bin/false failed"}}}, nil},
		}
		for i, s := range steps {
			if code, body := fs.post(d, d.id.ID, statusBody(d, s.status, s.install)); code != http.StatusNoContent {
				t.Fatalf("report %d: %d %s", i, code, body)
			}
		}
		evs, err := fs.db.Events(ctx, d.id.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Kind+": "+e.Summary)
		}
		want := []string{
			"joined: joined with join token bootstrap",
			"install: install: downloading", "install: install: done",
			"update: idle", "update: downloading 2.0.0", "update: rebooting 2.0.0",
			"update: idle", "rolled_back: rolled back from 2.0.0: health check /bin/false failed",
			"bad_release: bad release 2.0.0: health check /bin/false failed",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if tried, failed, err := fs.db.ReleaseOutcomes(ctx, "qemu", "2.0.0"); err != nil || tried != 1 || failed != 1 {
			t.Errorf("ReleaseOutcomes(qemu, 2.0.0) = %d, %d, %v; want 1 tried, 1 failed", tried, failed, err)
		}
		dev, err := fs.db.Device(ctx, d.id.ID)
		if err != nil || dev.Version != "1.0.0" || dev.Lifecycle != "running" || !strings.HasPrefix(dev.LastEvent, "rolled back") {
			t.Errorf("device = %+v, %v", dev, err)
		}

		// Bad input: one line, 4xx, nothing stored.
		before, _ := fs.db.Events(ctx, d.id.ID, 0, 0)
		for _, c := range []struct {
			name, id, body string
			want           int
		}{
			{"id mismatch in body", d.id.ID, `{"device":{"id":"yyyy"},"status":{}}`, 400},
			{"not json", d.id.ID, `nope`, 400},
			{"too large", d.id.ID, `{"device":{"id":"` + d.id.ID + `"},"status":"` + strings.Repeat("x", maxReportSize) + `"}`, 413},
			{"upper case id", "ABC", `{}`, 400},
			{"another device's id", "aaaaaaaaaaaaaaaa", `{"device":{"id":"aaaaaaaaaaaaaaaa"}}`, 403},
		} {
			code, body := fs.post(d, c.id, []byte(c.body))
			if code != c.want || !oneLineError(body) {
				t.Errorf("%s: %d %s; want %d with one error line", c.name, code, body, c.want)
			}
		}
		if code, body := fs.do(d.hc, http.MethodGet, "/v1/devices/"+d.id.ID+"/status", nil); code != http.StatusMethodNotAllowed || !oneLineError(body) {
			t.Errorf("GET status: %d %s", code, body)
		}
		after, _ := fs.db.Events(ctx, d.id.ID, 0, 0)
		if len(after) != len(before) {
			t.Errorf("bad requests added %d history entries", len(after)-len(before))
		}
	})
}

// TestForgedReports: a status report for another device's id, whatever
// key or none signs the connection, or its body replayed by another
// device, is refused (401/403) and changes nothing; an id keeps its key.
func TestForgedReports(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		fs := newFleetServer(t, dsn, FleetOptions{}, nil, "")
		ctx := context.Background()
		victim, attacker := fs.device(fs.join), fs.device(fs.join)
		good := statusBody(victim, map[string]any{"update": map[string]any{"phase": "idle"}}, nil)
		if code, body := fs.post(victim, victim.id.ID, good); code != http.StatusNoContent {
			t.Fatalf("victim's report: %d %s", code, body)
		}
		snapshot := func() string {
			d, err := fs.db.Device(ctx, victim.id.ID)
			if err != nil {
				t.Fatal(err)
			}
			evs, _ := fs.db.Events(ctx, victim.id.ID, 0, 0)
			b, _ := json.Marshal([]any{d, evs})
			return string(b)
		}
		was := snapshot()
		forged := statusBody(victim, map[string]any{"update": map[string]any{"phase": "committed", "event": "committed 6.6.6"}}, nil)
		for _, c := range []struct {
			name string
			hc   *http.Client
			body []byte
			want int
		}{
			{"no client certificate", fs.hs.Client(), forged, http.StatusUnauthorized},
			{"another device's certificate", attacker.hc, forged, http.StatusForbidden},
			{"the victim's own report replayed by another device", attacker.hc, good, http.StatusForbidden},
		} {
			code, body := fs.do(c.hc, http.MethodPost, "/v1/devices/"+victim.id.ID+"/status", c.body, "Content-Type", "application/json")
			if code != c.want || !oneLineError(body) {
				t.Errorf("%s: %d %s; want %d", c.name, code, body, c.want)
			}
		}
		if now := snapshot(); now != was {
			t.Errorf("refused reports changed the victim:\nbefore %s\nafter  %s", was, now)
		}
	})
}

// TestPendingDevices: a device without a join credential (or a wrong one)
// is refused with its reason and listed to operators as pending; an admin
// approves it; floods of new ids are capped by count and rate.
func TestPendingDevices(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		fs := newFleetServer(t, dsn, FleetOptions{MaxPending: 3, PendingRate: 1000}, nil, "")
		admin := fs.token("default", store.RoleAdmin)
		none, wrong := fs.device(""), fs.device("plumbjoin_not-a-token")
		for _, c := range []struct {
			d    *device
			want string
		}{{none, "no join credential"}, {wrong, "join token not valid"}} {
			code, body := fs.post(c.d, c.d.id.ID, statusBody(c.d, map[string]any{}, nil))
			if code != http.StatusForbidden || !strings.Contains(body, c.want) || !strings.Contains(body, "pending") || !oneLineError(body) {
				t.Errorf("device %s: %d %s; want 403 naming %q and pending", c.d.id.ID, code, body, c.want)
			}
		}
		if _, err := fs.db.Device(context.Background(), none.id.ID); err == nil {
			t.Error("a device without a join token was added")
		}
		code, body := fs.api(admin, http.MethodGet, "/v1/orgs/default/pending", nil)
		if code != 200 || !strings.Contains(body, none.id.ID) || !strings.Contains(body, wrong.id.ID) || !strings.Contains(body, "no join credential") {
			t.Errorf("pending list: %d %s", code, body)
		}
		// The pending list is capped: the 4th unknown device is refused
		// without being listed.
		fs.post(fs.device(""), "x", nil) // a mismatched id is refused before the list
		third := fs.device("")
		fs.post(third, third.id.ID, statusBody(third, map[string]any{}, nil))
		fourth := fs.device("")
		code, body = fs.post(fourth, fourth.id.ID, statusBody(fourth, map[string]any{}, nil))
		if code != http.StatusTooManyRequests || !strings.Contains(body, "pending list is full") {
			t.Errorf("4th pending device with a cap of 3: %d %s", code, body)
		}
		// An admin approves one: it reports from then on.
		if code, body := fs.api(admin, http.MethodPost, "/v1/orgs/default/pending/"+none.id.ID+"/approve", nil); code != http.StatusNoContent {
			t.Fatalf("approve: %d %s", code, body)
		}
		if code, body := fs.post(none, none.id.ID, statusBody(none, map[string]any{}, nil)); code != http.StatusNoContent {
			t.Errorf("approved device's report: %d %s", code, body)
		}
		if code, body := fs.api(admin, http.MethodGet, "/v1/orgs/default/audit", nil); code != 200 || !strings.Contains(body, `"device.approve"`) {
			t.Errorf("audit after approve: %d %s", code, body)
		}
	})
}

// TestJoinFloodCapped: one organization's joins are rate limited, and an
// organization at its device cap refuses more.
func TestJoinFloodCapped(t *testing.T) {
	fs := newFleetServer(t, "", FleetOptions{JoinRate: 0.1, PendingRate: 0.1}, nil, "") // bursts of 1
	a, b := fs.device(fs.join), fs.device(fs.join)
	if code, body := fs.post(a, a.id.ID, statusBody(a, map[string]any{}, nil)); code != http.StatusNoContent {
		t.Fatalf("first join: %d %s", code, body)
	}
	code, body := fs.post(b, b.id.ID, statusBody(b, map[string]any{}, nil))
	if code != http.StatusTooManyRequests || !oneLineError(body) || !strings.Contains(body, "per second") {
		t.Errorf("second join within the rate: %d %s; want 429", code, body)
	}
	// Unknown devices without a token: the first is listed, the next refused by rate.
	u1, u2 := fs.device(""), fs.device("")
	fs.post(u1, u1.id.ID, statusBody(u1, map[string]any{}, nil))
	if code, body := fs.post(u2, u2.id.ID, statusBody(u2, map[string]any{}, nil)); code != http.StatusTooManyRequests {
		t.Errorf("second unknown device within the rate: %d %s; want 429", code, body)
	}
	// The organization's device cap.
	fs2 := newFleetServer(t, "", FleetOptions{}, nil, "")
	o2, _ := fs2.db.OrgByName(context.Background(), "default")
	if _, err := fs2.db.DB().Exec(`UPDATE orgs SET max_devices = 1 WHERE id = $1`, o2.ID); err != nil {
		t.Fatal(err)
	}
	c, d := fs2.device(fs2.join), fs2.device(fs2.join)
	fs2.post(c, c.id.ID, statusBody(c, map[string]any{}, nil))
	if code, body := fs2.post(d, d.id.ID, statusBody(d, map[string]any{}, nil)); code != http.StatusForbidden || !strings.Contains(body, "maximum") {
		t.Errorf("join past the organization's cap: %d %s", code, body)
	}
}

// TestWorkloadHistory: each change of a container's state, health or
// restarts, and of the workloads' error, is one history entry.
func TestWorkloadHistory(t *testing.T) {
	fs := newFleetServer(t, "", FleetOptions{}, nil, "")
	d := fs.device(fs.join)
	wl := func(state string, restarts int, lastErr string) map[string]any {
		return map[string]any{"update": map[string]any{"phase": "idle"}, "workloads": map[string]any{"group": "kiosk", "last_error": lastErr,
			"containers": []map[string]any{{"name": "web", "state": state, "restarts": restarts}}}}
	}
	for _, s := range []map[string]any{wl("running", 0, ""), wl("running", 0, ""), wl("running", 1, ""), wl("stopped", 1, "pull failed")} {
		if code, body := fs.post(d, d.id.ID, statusBody(d, s, nil)); code != http.StatusNoContent {
			t.Fatalf("report: %d %s", code, body)
		}
	}
	evs, _ := fs.db.Events(context.Background(), d.id.ID, 0, 0)
	var got []string
	for _, e := range evs {
		if e.Kind == store.EventWorkload {
			got = append(got, e.Summary)
		}
	}
	want := []string{"web running", "web running (restarts 1)", "error: pull failed; web stopped (restarts 1)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("workload history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	dev, _ := fs.db.Device(context.Background(), d.id.ID)
	if dev.WorkloadGroup != "kiosk" || !strings.Contains(dev.Workloads, "pull failed") {
		t.Errorf("device workloads = %q %q", dev.WorkloadGroup, dev.Workloads)
	}
}

package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plumb-os/plumb/internal/testutil"
	"github.com/plumb-os/plumb/updater/report"
)

// TestPostgresKilled: PostgreSQL is killed (SIGKILL) while devices
// report. Every report the server acknowledged (204) is in the database
// afterwards; while it is down reports are refused with a clear 5xx (so
// plumbd keeps them and sends them again), the repository is still served
// (devices keep updating), and the service recovers when PostgreSQL
// returns, with the reporter's retried report delivered.
func TestPostgresKilled(t *testing.T) {
	pg := testutil.Postgres(t)
	r := makeRepo(t)
	fs := newFleetServer(t, pg.DSN, FleetOptions{}, nil, r.dir)
	ctx := context.Background()

	const devices = 4
	var ds []*device
	for range devices {
		d := fs.device(fs.join)
		if code, body := fs.post(d, d.id.ID, statusBody(d, map[string]any{"update": map[string]any{"phase": "idle"}}, nil)); code != http.StatusNoContent {
			t.Fatalf("join: %d %s", code, body)
		}
		ds = append(ds, d)
	}

	var mu sync.Mutex
	acked := map[string][]string{} // device -> versions acknowledged
	refused := 0
	var refusals []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("2.0.%d", i)
				body := statusBody(d, map[string]any{"update": map[string]any{"phase": "downloading", "version": v}}, nil)
				code, msg := fs.post(d, d.id.ID, body)
				mu.Lock()
				if code == http.StatusNoContent {
					acked[d.id.ID] = append(acked[d.id.ID], v)
				} else {
					refused++
					if len(refusals) < 3 {
						refusals = append(refusals, fmt.Sprintf("%d %s", code, msg))
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, vs := range acked {
			n += len(vs)
		}
		return n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("reports before the kill", func() bool { return count() >= 20 })

	pg.Kill()
	killedAt := count()
	// A reporter (plumbd's) sends a report while the database is down.
	rep := report.New(t.Context(), fs.hs.URL, report.Device{ID: ds[0].id.ID, PublicKey: ds[0].id.PublicKey}, ds[0].hc, nil)
	waitFor("refusals while PostgreSQL is down", func() bool { mu.Lock(); defer mu.Unlock(); return refused >= 8 })
	// Devices keep updating: the repository needs no database.
	if code, _ := fs.do(fs.hs.Client(), http.MethodGet, "/metadata/timestamp.json", nil); code != http.StatusOK {
		t.Errorf("timestamp.json while PostgreSQL is down: %d", code)
	}
	rep.Send(map[string]any{"update": map[string]any{"phase": "committed", "event": "committed 9.9.9"}}, nil)
	time.Sleep(300 * time.Millisecond)
	ackedWhileDown := count() - killedAt

	pg.Start()
	waitFor("reports after PostgreSQL returned", func() bool { return count() >= killedAt+ackedWhileDown+20 })
	close(stop)
	wg.Wait()
	rep.Flush(90 * time.Second)

	total := count()
	mu.Lock()
	defer mu.Unlock()
	for _, m := range refusals {
		if !strings.Contains(m, "error") || !(strings.HasPrefix(m, "503") || strings.HasPrefix(m, "500")) {
			t.Errorf("refusal while down: %s; want a one-line 5xx", m)
		}
	}
	lost := 0
	for id, vs := range acked {
		evs, err := fs.db.Events(ctx, id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, e := range evs {
			have[e.Version] = true
		}
		for _, v := range vs {
			if !have[v] {
				lost++
				t.Errorf("device %s: acknowledged report %s is not in the database", id, v)
			}
		}
	}
	// ds[0] also takes part in the writers above, so its last event may be a
	// later one: look for the reporter's report in its history.
	evs, err := fs.db.Events(ctx, ds[0].id.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	delivered := false
	for _, e := range evs {
		delivered = delivered || e.Version == "9.9.9"
	}
	if !delivered {
		t.Errorf("the report sent while PostgreSQL was down (committed 9.9.9) is not in the device's history: want it delivered after the restart")
	}
	t.Logf("acknowledged %d reports (%d while PostgreSQL was down), refused %d, lost %d", total, ackedWhileDown, refused, lost)
}

package report

// A real HTTP server on 127.0.0.1 that is down (503) and then up; the
// queue is a real directory.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestQueueWhileOffline(t *testing.T) {
	var up atomic.Bool
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var body struct {
			Status string `json:"status"`
		}
		json.Unmarshal(b, &body)
		mu.Lock()
		got = append(got, body.Status)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	r := New(t.Context(), srv.URL, Device{ID: "abcdefghijklmnop"}, srv.Client(), nil)
	if err := r.QueueIn(dir, 3); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two", "three", "four"} {
		r.Send(s, nil)
		r.Flush(10 * time.Second)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("%d reports queued, want 3 (the cap; the oldest dropped)", len(ents))
	}
	up.Store(true)
	r.Send("five", nil)
	r.Flush(10 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"two", "three", "four", "five"}; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("server got %q, want %q (queued first, oldest first)", got, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d reports still queued, want none", len(ents))
	}
}

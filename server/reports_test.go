package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/plumb-os/plumb/updater/report"
)

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

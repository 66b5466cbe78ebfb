package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNonceCaps: a device's nonces are capped per device (its oldest
// goes) and in all (503 past the cap); one device asking again and again
// never drops another's, and a device without an enrollment or a
// certificate gets none. The nonces are in the database (SQLite and
// PostgreSQL), shared by every server on it.
func TestNonceCaps(t *testing.T) { eachDB(t, testNonceCaps) }

func testNonceCaps(t *testing.T, dsn string) {
	fs := newFleetServer(t, dsn, FleetOptions{}, &AttestOptions{}, "")
	ctx := context.Background()
	a, b, c := fs.device(fs.join), fs.device(fs.join), fs.device(fs.join)
	for _, d := range []*device{a, b, c} {
		if code, body := fs.post(d, d.id.ID, statusBody(d, map[string]any{}, nil)); code != http.StatusNoContent {
			t.Fatalf("join: %d %s", code, body)
		}
	}
	// a and b have an enrolled AK (the bytes do not matter for a nonce).
	for _, d := range []*device{a, b} {
		if err := fs.db.SaveEnrollment(ctx, d.id.ID, []byte("ek"), []byte("ak"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	nonce := func(d *device, hc *http.Client) (int, string) {
		return fs.do(hc, http.MethodGet, "/v1/attest/nonce?device="+d.id.ID, nil)
	}
	if code, _ := nonce(b, b.hc); code != http.StatusOK {
		t.Fatalf("b's nonce: %d", code)
	}
	for range 10 {
		if code, body := nonce(a, a.hc); code != http.StatusOK {
			t.Fatalf("a's nonce: %d %s", code, body)
		}
	}
	v := fs.srv.verify
	na, err := fs.db.Nonces(ctx, a.id.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nb, err := fs.db.Nonces(ctx, b.id.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if na != maxNoncesPerDevice || nb != 1 {
		t.Errorf("outstanding nonces: a %d (want %d), b %d (want 1)", na, maxNoncesPerDevice, nb)
	}
	if code, body := nonce(b, a.hc); code != http.StatusForbidden || !oneLineError(body) {
		t.Errorf("a asks a nonce for b: %d %s; want 403", code, body)
	}
	if code, body := nonce(a, fs.hs.Client()); code != http.StatusUnauthorized {
		t.Errorf("nonce without a certificate: %d %s; want 401", code, body)
	}
	if code, body := nonce(c, c.hc); code != http.StatusConflict || !strings.Contains(body, "not_enrolled") {
		t.Errorf("nonce for an unenrolled device: %d %s; want 409 not_enrolled", code, body)
	}
	// The global cap: with 5 outstanding and a cap of 5, the next is 503.
	v.max = 5 // no request runs now
	if code, body := nonce(b, b.hc); code != http.StatusServiceUnavailable || !strings.Contains(body, "too many outstanding nonces") {
		t.Errorf("nonce past the global cap: %d %s; want 503", code, body)
	}
}

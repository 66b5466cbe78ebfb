// Package report sends the device's status to the report endpoint,
// POST <base>/v1/devices/<id>/status, with the body
// {"device": {"id", "public_key"}, "status": <plumbd status>, "install": <progress>}.
//
// Reports go over mutual TLS with the device's identity key (DeviceClient):
// the server refuses a report whose device id is not the hash of the
// client certificate's key. A report the server did not acknowledge (2xx)
// is sent again, newest first, with a growing pause, until a newer one
// replaces it.
//
// Send never blocks and never fails: the Reporter keeps only the newest
// report and posts it from its own goroutine (started by New, ended with
// the context), so a slow or missing server never delays an update. Flush
// waits a bounded time for the newest report to be out (before a reboot).
// Safe for concurrent use.
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/format/deviceapi"
)

// Device identifies the reporting device (format/deviceapi).
type Device = deviceapi.Device

// Body is what a report carries (format/deviceapi).
type Body = deviceapi.Body

// doer is satisfied by *http.Client.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// timeout bounds one POST.
const timeout = 15 * time.Second

// Reporter posts reports for one device.
type Reporter struct {
	url string
	dev Device
	hc  doer
	log *slog.Logger

	mu       sync.Mutex
	pending  *Body
	inflight bool
	wake     chan struct{}
	q        *queue // reports not sent yet (queue.go); nil: dropped
}

// URL returns the endpoint for base ("" or "off": none).
func URL(base, id string) string {
	if base == "" || base == "off" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/" + deviceapi.StatusPath(id)
}

// New returns a Reporter posting to URL(base, dev.ID) until ctx ends; nil
// (whose methods do nothing) when base is "" or "off".
func New(ctx context.Context, base string, dev Device, hc doer, log *slog.Logger) *Reporter {
	u := URL(base, dev.ID)
	if u == "" {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reporter{url: u, dev: dev, hc: hc, log: log, wake: make(chan struct{}, 1)}
	go r.loop(ctx)
	return r
}

// Send queues status (and install progress, if not nil) as the newest
// report, replacing one not yet sent.
func (r *Reporter) Send(status, install any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.pending = &Body{Device: r.dev, Status: status, Install: install}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Flush waits until the newest report is sent (or failed), at most d.
func (r *Reporter) Flush(d time.Duration) {
	if r == nil {
		return
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		r.mu.Lock()
		idle := r.pending == nil && !r.inflight
		r.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Retry pauses after a report the server did not take.
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

func (r *Reporter) loop(ctx context.Context) {
	pause := firstRetry
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry:
		}
		retry = nil
		for {
			r.mu.Lock()
			b, q := r.pending, r.q
			r.pending, r.inflight = nil, b != nil
			r.mu.Unlock()
			var err error
			if q != nil && q.len() > 0 {
				err = r.drain(ctx, q) // older reports first: the server keeps the last
			}
			if b == nil && err == nil {
				break
			}
			if b != nil {
				if err == nil {
					err = r.post(ctx, b)
				}
				if err != nil && q != nil {
					// Kept on /data until the server takes it (the drain
					// above sends it, oldest first).
					if qerr := q.add(b); qerr != nil {
						r.log.Warn("status report not queued", "err", qerr)
					} else {
						b = nil
					}
				}
			}
			r.mu.Lock()
			r.inflight = false
			if err != nil && b != nil && r.pending == nil {
				r.pending = b // not acknowledged: send it again, unless a newer one came
			}
			r.mu.Unlock()
			if err != nil {
				r.log.Warn("status report not sent", "url", r.url, "err", err, "retry_in", pause)
				retry = time.After(pause)
				pause = min(2*pause, maxRetry)
				break
			}
			pause = firstRetry
			r.log.Debug("status report sent", "url", r.url)
		}
	}
}

func (r *Reporter) post(ctx context.Context, b *Body) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("server answered %s", resp.Status)
	}
	return nil
}

// Package sim is a simulated fleet for benchmarks: N devices, each with
// its own P-256 identity key held in memory, talking to a fleet server
// over real HTTPS exactly as plumbd does:
//
//   - a poll is a conditional GET of metadata/timestamp.json with the ETag
//     of the last answer, on plumbd's TUF transport (fetch.NewTransport and
//     fetch.TLSConfig: HTTP/1.1, X25519, TLS session resumption), with no
//     client certificate;
//   - a status report is a POST of deviceapi.Body to
//     /v1/devices/ID/status through report.DeviceClient: mutual TLS with a
//     certificate made from the device's identity key, and the join token.
//
// After each check-in a device drops its idle connections, as a NAT or
// the server does between two polls minutes apart, so every check-in opens
// a new TCP connection and resumes its TLS session (each device has its own
// session caches, one per client, as plumbd has).
//
// Run drives a fleet at a given rate of check-ins (or as fast as it can)
// and records latencies (Recorder). ReadProc samples another process's
// CPU time and RSS from /proc, for the server's cost per check-in.
//
// The API is small on purpose: New, Device.Poll, Device.Report, Run,
// Recorder and ReadProc. See bench/fleet for the benchmark that uses it.
package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/report"
)

// Options configures New.
type Options struct {
	// Base is the server's URL, e.g. "https://127.0.0.1:8443/"; Bases, when
	// not empty, are several servers behind one name, as a round-robin
	// load balancer spreads them: each check-in of a device goes to the
	// next server in turn (its poll and its report to the same one).
	Base  string
	Bases []string
	// Roots are the CAs the devices trust (the server's ca.pem).
	Roots *x509.CertPool
	// JoinToken is sent with every report (report.DeviceClient).
	JoinToken string
	// N is the number of devices.
	N int
	// Hardware and Version are what the devices report running.
	Hardware, Version string
}

// Fleet is N simulated devices.
type Fleet struct {
	Devices []*Device
}

// Device is one simulated device. Its methods are safe for concurrent use,
// but a device makes one check-in at a time in Run.
type Device struct {
	// ID is the device id: the hash of its identity key.
	ID string
	// Identity is its identity key (in memory).
	Identity *identity.Identity

	bases             []string // each ending in "/"
	hardware, version string

	tuf, dc *http.Client // plumbd's TUF client and device (mutual TLS) client

	mu   sync.Mutex
	etag string
	step int // the next report's update phase (phases)
	turn int // the server of the next check-in: bases[turn%len]
}

// New makes opts.N devices: a key, a certificate and two clients each
// (about 1 ms of CPU per device).
func New(opts Options) (*Fleet, error) {
	in := opts.Bases
	if len(in) == 0 {
		in = []string{opts.Base}
	}
	var bases []string
	for _, b := range in {
		if !strings.HasPrefix(b, "https://") {
			return nil, fmt.Errorf("sim: base URL %q: expected https://HOST:PORT/", b)
		}
		bases = append(bases, strings.TrimRight(b, "/")+"/")
	}
	if opts.N <= 0 {
		return nil, fmt.Errorf("sim: expected a positive number of devices, got %d", opts.N)
	}
	f := &Fleet{Devices: make([]*Device, opts.N)}
	for i := range f.Devices {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		id, err := identity.FromKey(k)
		if err != nil {
			return nil, err
		}
		// One TUF client and one device client, each with its own
		// session cache, as plumbd has (updater/agent/setup.go).
		tuf := &http.Client{Transport: fetch.NewTransport(fetch.TLSConfig(opts.Roots, tls.NewLRUClientSessionCache(4)))}
		dc, err := report.DeviceClient(tuf, id, opts.JoinToken)
		if err != nil {
			return nil, err
		}
		f.Devices[i] = &Device{
			ID: id.ID, Identity: id, bases: bases, turn: i,
			hardware: opts.Hardware, version: opts.Version, tuf: tuf, dc: dc,
		}
	}
	return f, nil
}

// base is the server of the current check-in.
func (d *Device) base() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bases[d.turn%len(d.bases)]
}

// Poll makes the device's poll: a conditional GET of timestamp.json with
// the ETag of its last answer. It returns the status (200 or 304).
func (d *Device) Poll(ctx context.Context) (int, error) {
	d.mu.Lock()
	etag := d.etag
	d.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base()+"metadata/timestamp.json", nil)
	if err != nil {
		return 0, err
	}
	req.Header["User-Agent"] = []string{""} // plumbd sends only Host and If-None-Match
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := d.tuf.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<10)); err != nil {
		return 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		d.mu.Lock()
		d.etag = resp.Header.Get("ETag")
		d.mu.Unlock()
	case http.StatusNotModified:
	default:
		return resp.StatusCode, fmt.Errorf("poll: %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// phases are the update phases a device reports in turn, each a state
// change the server keeps in the device's history.
var phases = []string{"idle", "downloading", "applying", "verified", "rebooting", "trial", "committed"}

// Report posts the device's next status report: the next update phase
// (each report is a state change, one history entry), signed by mutual
// TLS with its identity key.
func (d *Device) Report(ctx context.Context) error {
	d.mu.Lock()
	step := d.step
	d.step++
	d.mu.Unlock()
	body, err := json.Marshal(deviceapi.Body{
		Device: deviceapi.Device{ID: d.ID, PublicKey: d.Identity.PublicKey},
		Status: d.status(step),
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, report.URL(d.base(), d.ID), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.dc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &StatusError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(msg))}
	}
	return nil
}

// StatusError is a report the server did not take.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return fmt.Sprintf("report: %d %s", e.Code, e.Msg) }

// IsStatus reports whether err is a StatusError with code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// status is plumbd's status (updater/agent.Status) as JSON would carry it,
// with the fields and sizes of a real report: the agent version, the
// release facts, the slot and TPM facts, the device identity and the
// update state.
func (d *Device) status(step int) map[string]any {
	phase := phases[step%len(phases)]
	next := "2.0." + fmt.Sprint(step/len(phases))
	update := map[string]any{
		"phase": phase, "version": next, "bytes": 0, "total": 0,
		"checked": time.Now().UTC().Format(time.RFC3339),
	}
	if phase == "committed" {
		update["event"] = "committed " + next
		update["last_result"] = "ok"
	}
	return map[string]any{
		"agent_version": "1.2.0",
		"release":       map[string]any{"hardware": d.hardware, "version": d.version, "channel": "stable", "built": "2026-12-01T00:00:00Z"},
		"slot":          "a",
		"boot":          map[string]any{"slot": "a", "entry": "plumb-a.efi", "tries_left": 0, "booted": "2026-12-04T08:00:00Z"},
		"tpm":           map[string]any{"present": true, "manufacturer": "IBM", "pcr_banks": []string{"sha256"}},
		"device":        d.Identity,
		"update":        update,
	}
}

// Drop ends the device's check-in: it closes its idle connections, so the
// next check-in opens a new TCP connection and resumes its TLS session, as
// after minutes of silence behind a NAT, and goes to the next server of
// Options.Bases.
func (d *Device) Drop() {
	d.tuf.CloseIdleConnections()
	d.dc.CloseIdleConnections()
	d.mu.Lock()
	d.turn++
	d.mu.Unlock()
}

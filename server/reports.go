package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Device status reports (plumbd's POST <report>/v1/devices/<id>/status):
// the last report of each device is kept as one JSON file, <id>.json, in
// the reports directory, written atomically. GET /v1/devices lists them,
// GET /v1/devices/<id> returns one. Reports are not authenticated: they say
// what a device claims; attestation (/v1/attest) is what proves it.

// maxReportSize bounds a report's body.
const maxReportSize = 64 << 10

var deviceIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// Report is one device's last report as stored and served.
type Report struct {
	ID         string          `json:"id"`
	ReceivedAt time.Time       `json:"received_at"`
	Remote     string          `json:"remote"`
	Report     json.RawMessage `json:"report"` // the body the device sent
}

// reportBody is the part of a report the server checks.
type reportBody struct {
	Device struct {
		ID        string `json:"id"`
		PublicKey []byte `json:"public_key"`
	} `json:"device"`
	Status json.RawMessage `json:"status"`
}

type reports struct {
	dir string
	mu  sync.Mutex // one writer per directory
}

func (rs *reports) serve(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/devices")
	switch {
	case rest == "" || rest == "/":
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rs.list(w)
	case strings.HasSuffix(rest, "/status") && strings.Count(rest, "/") == 2:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rs.store(w, r, strings.TrimSuffix(strings.TrimPrefix(rest, "/"), "/status"))
	case strings.Count(rest, "/") == 1:
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rs.get(w, strings.TrimPrefix(rest, "/"))
	default:
		http.NotFound(w, r)
	}
}

func (rs *reports) store(w http.ResponseWriter, r *http.Request, id string) {
	if !deviceIDRE.MatchString(id) {
		http.Error(w, fmt.Sprintf("device id: expected 1-64 of a-z 0-9 -, got %q", id), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportSize+1))
	if err != nil {
		http.Error(w, "reading the report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxReportSize {
		http.Error(w, fmt.Sprintf("report: expected at most %d bytes", maxReportSize), http.StatusRequestEntityTooLarge)
		return
	}
	var b reportBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil {
		http.Error(w, "report: expected JSON {\"device\": {\"id\", \"public_key\"}, \"status\": {...}}: "+err.Error(), http.StatusBadRequest)
		return
	}
	if b.Device.ID != id {
		http.Error(w, fmt.Sprintf("report: device.id: expected %q (the URL's), got %q", id, b.Device.ID), http.StatusBadRequest)
		return
	}
	rep := Report{ID: id, ReceivedAt: time.Now().UTC(), Remote: r.RemoteAddr, Report: body}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rs.mu.Lock()
	err = os.MkdirAll(rs.dir, 0o755)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(rs.dir, id+".json"), append(data, '\n'), 0o644)
	}
	rs.mu.Unlock()
	if err != nil {
		http.Error(w, "storing the report failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rs *reports) get(w http.ResponseWriter, id string) {
	if !deviceIDRE.MatchString(id) {
		http.Error(w, "no such device", http.StatusNotFound)
		return
	}
	data, err := os.ReadFile(filepath.Join(rs.dir, id+".json"))
	if err != nil {
		http.Error(w, "no such device", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(data)
}

// list answers every stored report, by device id.
func (rs *reports) list(w http.ResponseWriter) {
	ents, err := os.ReadDir(rs.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		http.Error(w, "listing reports failed", http.StatusInternalServerError)
		return
	}
	out := []json.RawMessage{}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".json") && deviceIDRE.MatchString(strings.TrimSuffix(n, ".json")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(rs.dir, n))
		if err == nil && json.Valid(data) {
			out = append(out, bytes.TrimSpace(data))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}

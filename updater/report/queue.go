package report

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// DefaultQueueMax is how many unsent reports a queue keeps.
const DefaultQueueMax = 256

// maxQueued caps the size of one queued report file read back.
const maxQueued = 1 << 20

// queue keeps reports that could not be sent (the device is offline) as
// files <nanoseconds>.json in dir, at most max of them (the oldest are
// dropped), and sends them in order, oldest first, before any newer
// report, when the server answers again.
type queue struct {
	dir string
	max int
}

// QueueIn makes the Reporter keep the reports it cannot send in dir (on
// the data partition: /data/plumb/reports), at most max (0:
// DefaultQueueMax), and send them when the network returns. Call it
// before the first Send.
func (r *Reporter) QueueIn(dir string, max int) error {
	if r == nil {
		return nil
	}
	if max <= 0 {
		max = DefaultQueueMax
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("report queue: %w", err)
	}
	r.mu.Lock()
	r.q = &queue{dir: dir, max: max}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}: // send what an earlier run queued
	default:
	}
	return nil
}

// files lists the queued reports, oldest first.
func (q *queue) files() []string {
	ents, _ := os.ReadDir(q.dir)
	var out []string
	for _, e := range ents {
		n := e.Name()
		if _, err := strconv.ParseInt(strings.TrimSuffix(n, ".json"), 10, 64); err == nil && strings.HasSuffix(n, ".json") {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.ParseInt(strings.TrimSuffix(out[i], ".json"), 10, 64)
		b, _ := strconv.ParseInt(strings.TrimSuffix(out[j], ".json"), 10, 64)
		return a < b
	})
	return out
}

// add stores b, dropping the oldest reports beyond max.
func (q *queue) add(b *Body) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	name := strconv.FormatInt(time.Now().UnixNano(), 10) + ".json"
	if err := atomicfile.WriteFile(filepath.Join(q.dir, name), data, 0o600); err != nil {
		return err
	}
	files := q.files()
	for len(files) > q.max {
		os.Remove(filepath.Join(q.dir, files[0]))
		files = files[1:]
	}
	return nil
}

// len is how many reports are queued.
func (q *queue) len() int { return len(q.files()) }

// drain posts the queued reports, oldest first, removing each once the
// server took it; it stops at the first failure.
func (r *Reporter) drain(ctx context.Context, q *queue) error {
	for _, n := range q.files() {
		p := filepath.Join(q.dir, n)
		data, err := os.ReadFile(p)
		if err != nil || len(data) > maxQueued {
			os.Remove(p)
			continue
		}
		var b Body
		if json.Unmarshal(data, &b) != nil {
			r.log.Warn("dropping an unreadable queued report", "file", p)
			os.Remove(p)
			continue
		}
		if err := r.post(ctx, &b); err != nil {
			return err
		}
		os.Remove(p)
		r.log.Debug("queued status report sent", "file", n)
	}
	return nil
}

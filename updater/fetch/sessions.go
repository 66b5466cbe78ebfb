package fetch

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Caps of the session file: a device talks to one repository (and maybe a
// report or proxy host), so a few entries are plenty.
const (
	maxSessions        = 8
	maxSessionFileSize = 64 << 10
	maxSessionEntry    = 16 << 10 // ticket + state (the state holds the server's chain)
	// sessionSaveEvery: a new ticket replaces a saved one at most this
	// often, so a 5-minute poll does not rewrite the file every time. After a
	// restart the agent resumes with a ticket at most this old; servers keep
	// tickets valid for much longer (Go: 7 days; nginx: ssl_session_timeout,
	// 1 day in docs/nginx.md).
	sessionSaveEvery = time.Hour
)

// SessionCache is a tls.ClientSessionCache that keeps TLS session tickets in
// a file (on the data partition), so that a poll on a new TCP connection, and
// the first poll after a restart, resume the TLS session instead of making a
// full handshake: no certificate chain, no signature, about a third of the
// bytes. It holds at most 8 sessions; the file is replaced atomically, mode
// 0600, and rewritten at most once an hour per server (or when a session is
// dropped). A missing, unreadable or malformed file is an empty cache (one
// WARN line), never an error: the next handshake is a full one.
//
// What the file grants: its resumption secrets let whoever reads it
// impersonate the server to this device for the ticket's lifetime, the same
// trust as the device's TLS keys; nothing installed depends on it, because
// metadata and targets are verified through TUF whatever the transport.
type SessionCache struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]*sessionEntry
}

type sessionEntry struct {
	cs    *tls.ClientSessionState
	saved time.Time // when this key's ticket was last written to the file
	file  sessionRecord
}

// sessionFile is the file's JSON.
type sessionFile struct {
	Version  int             `json:"version"`
	Sessions []sessionRecord `json:"sessions"`
}

type sessionRecord struct {
	Key    string `json:"key"`
	Saved  int64  `json:"saved"` // Unix seconds
	Ticket []byte `json:"ticket"`
	State  []byte `json:"state"` // tls.SessionState.Bytes
}

// NewSessionCache loads the sessions kept in path (which need not exist).
// log receives a WARN line when the file cannot be used; nil discards.
func NewSessionCache(path string, log *slog.Logger) *SessionCache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &SessionCache{path: path, log: log, now: time.Now, entries: map[string]*sessionEntry{}}
	recs, err := readSessionFile(path)
	if err != nil {
		log.Warn("TLS session cache unusable, starting empty", "file", path, "err", err)
		return c
	}
	for _, r := range recs {
		st, err := tls.ParseSessionState(r.State)
		if err != nil {
			continue // e.g. written by another Go version: a full handshake
		}
		cs, err := tls.NewResumptionState(r.Ticket, st)
		if err != nil {
			continue
		}
		c.entries[r.Key] = &sessionEntry{cs: cs, saved: time.Unix(r.Saved, 0), file: r}
	}
	return c
}

func readSessionFile(path string) ([]sessionRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSessionFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSessionFileSize {
		return nil, fmt.Errorf("expected at most %d bytes, got more", maxSessionFileSize)
	}
	var sf sessionFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, fmt.Errorf("expected the session cache's JSON: %v", err)
	}
	if sf.Version != 1 {
		return nil, fmt.Errorf("version: expected 1, got %d", sf.Version)
	}
	if len(sf.Sessions) > maxSessions {
		sf.Sessions = sf.Sessions[:maxSessions]
	}
	return sf.Sessions, nil
}

// Get implements tls.ClientSessionCache.
func (c *SessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	return e.cs, true
}

// Put implements tls.ClientSessionCache: cs nil drops key's session.
func (c *SessionCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if cs == nil {
		if _, ok := c.entries[key]; ok {
			delete(c.entries, key)
			c.saveLocked()
		}
		return
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || ticket == nil {
		return
	}
	state, err := st.Bytes()
	if err != nil || len(ticket)+len(state) > maxSessionEntry {
		return
	}
	e, ok := c.entries[key]
	if !ok {
		e = &sessionEntry{}
		c.entries[key] = e
	}
	e.cs = cs
	if ok && now.Sub(e.saved) < sessionSaveEvery && now.Sub(e.saved) >= 0 {
		return // the saved ticket is recent enough to resume after a restart
	}
	e.saved = now
	e.file = sessionRecord{Key: key, Saved: now.Unix(), Ticket: ticket, State: state}
	// Bounded: the oldest saved sessions go first.
	for len(c.entries) > maxSessions {
		var oldest string
		for k, v := range c.entries {
			if oldest == "" || v.saved.Before(c.entries[oldest].saved) {
				oldest = k
			}
		}
		delete(c.entries, oldest)
	}
	c.saveLocked()
}

// saveLocked writes every entry's saved record, atomically. A failure is
// logged: the sessions stay in memory and the next save tries again.
func (c *SessionCache) saveLocked() {
	sf := sessionFile{Version: 1, Sessions: []sessionRecord{}}
	for _, e := range c.entries {
		if e.file.Ticket != nil {
			sf.Sessions = append(sf.Sessions, e.file)
		}
	}
	sort.Slice(sf.Sessions, func(i, j int) bool { return sf.Sessions[i].Key < sf.Sessions[j].Key })
	b, err := json.Marshal(sf)
	if err == nil && len(b) > maxSessionFileSize {
		err = fmt.Errorf("%d bytes, over the cap of %d", len(b), maxSessionFileSize)
	}
	if err == nil {
		err = atomicfile.WriteFile(c.path, b, 0o600)
	}
	if err != nil {
		c.log.Warn("saving TLS sessions failed (kept in memory)", "file", c.path, "err", err)
	}
}

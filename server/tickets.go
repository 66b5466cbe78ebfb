package server

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"time"
)

// TLS session ticket keys shared through the fleet database: a device's
// ticket from one plumb serve resumes its session on any other sharing
// the database (behind a load balancer), so a poll stays a resumed
// handshake of a few hundred bytes whichever process answers. Go's own
// keys are random per process.
const (
	ticketRotate  = 24 * time.Hour     // a new key encrypts tickets after this
	ticketKeep    = 7 * 24 * time.Hour // an old key still decrypts until this
	ticketRefresh = 10 * time.Minute   // how often a server reads the keys
)

// ticketKeys encrypts and decrypts session tickets with the current keys.
type ticketKeys struct {
	cur atomic.Pointer[tls.Config] // holds only the keys; nil: Go's own
}

// install makes cfg's tickets use k's keys once loaded (Go's per-process
// keys before).
func (k *ticketKeys) install(cfg *tls.Config) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if c := k.cur.Load(); c != nil {
			return c.EncryptTicket(cs, ss)
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if c := k.cur.Load(); c != nil {
			return c.DecryptTicket(identity, cs)
		}
		return cfg.DecryptTicket(identity, cs)
	}
}

// load reads (and rotates) the keys in the database.
func (k *ticketKeys) load(ctx context.Context, f *fleet) error {
	keys, err := f.db.TicketKeys(ctx, time.Now(), ticketRotate, ticketKeep)
	if err != nil {
		return err
	}
	c := &tls.Config{}
	c.SetSessionTicketKeys(keys)
	k.cur.Store(c)
	return nil
}

// run reloads the keys every ticketRefresh until ctx ends.
func (k *ticketKeys) run(ctx context.Context, f *fleet) {
	t := time.NewTicker(ticketRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.load(ctx, f); err != nil && ctx.Err() == nil {
			f.log.Warn("TLS session ticket keys not reloaded from the fleet database", "err", err)
		}
	}
}

package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Attestation nonces and enrollment challenges live in the database, not
// in a process, so that a device may get one from one server and answer
// another sharing the database; each is taken once (a DELETE that only
// one caller wins).

// AddNonce keeps a nonce for device until expires. A device keeps at most
// perDevice (its oldest go); past total outstanding nonces in all (expired
// ones dropped first) it returns ErrFull.
func (s *Store) AddNonce(ctx context.Context, device string, nonce []byte, now, expires time.Time, perDevice, total int) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `DELETE FROM attest_nonces WHERE expires <= $1`, ms(now)); err != nil {
			return err
		}
		var n int
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM attest_nonces`).Scan(&n); err != nil {
			return err
		}
		if n >= total {
			return fmt.Errorf("%w: %d outstanding nonces", ErrFull, n)
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO attest_nonces (device_id, nonce, created, expires) VALUES ($1, $2, $3, $4)`,
			device, nonce, ms(now), ms(expires)); err != nil {
			return err
		}
		_, err := t.ExecContext(ctx, `DELETE FROM attest_nonces WHERE device_id = $1 AND nonce NOT IN
			(SELECT nonce FROM attest_nonces WHERE device_id = $1 ORDER BY created DESC, nonce LIMIT $2)`, device, perDevice)
		return err
	})
}

// TakeNonce removes device's nonce and reports whether it was outstanding
// and not expired at now: true for one caller only.
func (s *Store) TakeNonce(ctx context.Context, device string, nonce []byte, now time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM attest_nonces WHERE device_id = $1 AND nonce = $2 AND expires > $3`, device, nonce, ms(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Nonces counts device's outstanding nonces at now ("" counts all).
func (s *Store) Nonces(ctx context.Context, device string, now time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM attest_nonces WHERE ($1 = '' OR device_id = $1) AND expires > $2`, device, ms(now)).Scan(&n)
	return n, err
}

// PutChallenge keeps device's enrollment challenge (an opaque document,
// with the organization it joins when answered, if any) until expires,
// replacing its previous one. Past total outstanding challenges of other
// devices it returns ErrFull.
func (s *Store) PutChallenge(ctx context.Context, device, challenge, joinOrg string, now, expires time.Time, total int) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `DELETE FROM attest_challenges WHERE expires <= $1`, ms(now)); err != nil {
			return err
		}
		var n int
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM attest_challenges WHERE device_id <> $1`, device).Scan(&n); err != nil {
			return err
		}
		if n >= total {
			return fmt.Errorf("%w: %d outstanding enrollments", ErrFull, n)
		}
		_, err := t.ExecContext(ctx, `INSERT INTO attest_challenges (device_id, challenge, join_org, expires) VALUES ($1, $2, $3, $4)
			ON CONFLICT (device_id) DO UPDATE SET challenge = excluded.challenge, join_org = excluded.join_org, expires = excluded.expires`,
			device, challenge, joinOrg, ms(expires))
		return err
	})
}

// TakeChallenge removes device's challenge and returns it if it had not
// expired at now; ErrNotFound otherwise. One caller only gets it.
func (s *Store) TakeChallenge(ctx context.Context, device string, now time.Time) (challenge, joinOrg string, err error) {
	err = s.tx(ctx, func(t *sql.Tx) error {
		var exp int64
		err := t.QueryRowContext(ctx, `SELECT challenge, join_org, expires FROM attest_challenges WHERE device_id = $1`, device).Scan(&challenge, &joinOrg, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `DELETE FROM attest_challenges WHERE device_id = $1 AND expires = $2`, device, exp)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 || exp <= ms(now) {
			return errors.Join(ErrNotFound, err) // taken by another request, or expired
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return challenge, joinOrg, nil
}

// ticketKeysLock is the PostgreSQL advisory lock TicketKeys takes.
const ticketKeysLock int64 = 0x706c756d62544b // "plumbTK"

// TicketKeys returns the TLS session ticket keys, newest first (it
// encrypts new tickets; the others still decrypt), shared by every server
// on the database. When the newest is older than rotate it adds a new
// random one; keys older than keep are dropped.
func (s *Store) TicketKeys(ctx context.Context, now time.Time, rotate, keep time.Duration) ([][32]byte, error) {
	var keys [][32]byte
	err := s.tx(ctx, func(t *sql.Tx) error {
		keys = nil
		// One server at a time decides on a rotation (SQLite's writer
		// lock does it there): two servers starting together must not
		// each add a key the other does not see yet.
		if s.dialect == Postgres {
			if _, err := t.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, ticketKeysLock); err != nil {
				return err
			}
		}
		if _, err := t.ExecContext(ctx, `DELETE FROM tls_ticket_keys WHERE created <= $1`, ms(now.Add(-keep))); err != nil {
			return err
		}
		var newest sql.NullInt64
		if err := t.QueryRowContext(ctx, `SELECT MAX(created) FROM tls_ticket_keys`).Scan(&newest); err != nil {
			return err
		}
		if !newest.Valid || newest.Int64 <= ms(now.Add(-rotate)) {
			var k [32]byte
			rand.Read(k[:])
			if _, err := t.ExecContext(ctx, `INSERT INTO tls_ticket_keys (id, created, secret) VALUES ($1, $2, $3)`, NewID(), ms(now), k[:]); err != nil {
				return err
			}
		}
		rows, err := t.QueryContext(ctx, `SELECT secret FROM tls_ticket_keys ORDER BY created DESC, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			if len(b) != 32 {
				return fmt.Errorf("tls_ticket_keys: expected 32-byte secrets, got %d bytes", len(b))
			}
			keys = append(keys, [32]byte(b))
		}
		return rows.Err()
	})
	return keys, err
}

// Package store owns the fleet service's database: organizations, their
// join tokens, devices and each device's history, attestation enrollments,
// pending devices, operators, sessions, API tokens, grants and the audit
// log.
//
// Open takes a data source: a file path (embedded SQLite, the default, one
// file under the serve directory) or a postgres:// URL (PostgreSQL through
// pgx). Both run the same schema, brought up to date by the versioned
// migrations in migrations/ (pressly/goose) when Open returns. Every write
// that a caller acknowledges is one transaction, committed before the
// method returns. A Store is safe for concurrent use, and several
// processes may share one PostgreSQL database: no state is kept in memory.
//
// Times are stored as Unix milliseconds. Queries use $N placeholders, in
// order of first use, which both drivers bind positionally.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // driver "sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Errors callers tell apart.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrFull     = errors.New("limit reached")
)

// Dialects.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Store is an open fleet database.
type Store struct {
	db      *sql.DB
	dialect string
	o       Options
}

// Options tune a Store.
type Options struct {
	// MaxEvents bounds each device's history: recording an event past it
	// drops the device's oldest. Default DefaultMaxEvents.
	MaxEvents int64
}

// DefaultMaxEvents is the default history kept per device.
const DefaultMaxEvents = 1000

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens (creating when needed) the database dsn names and applies the
// migrations it lacks.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("fleet database: expected a file path or a postgres:// URL, got nothing")
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	s := &Store{dialect: SQLite, o: o}
	var err error
	var opts []goose.ProviderOption
	gd := goose.DialectSQLite3
	if IsPostgres(dsn) {
		s.dialect, gd = Postgres, goose.DialectPostgres
		if s.db, err = sql.Open("pgx", dsn); err != nil {
			return nil, fmt.Errorf("fleet database: %w", err)
		}
		// Every connection stays open when idle: database/sql keeps 2 by
		// default, so a burst of reports closed the others and the next
		// opened new ones (a PostgreSQL backend forked per connection).
		s.db.SetMaxOpenConns(16)
		s.db.SetMaxIdleConns(16)
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	} else {
		// WAL lets readers run beside the one writer; busy_timeout makes
		// a second writer wait instead of failing; foreign keys are off
		// by default in SQLite.
		q := "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
		if s.db, err = sql.Open("sqlite", "file:"+dsn+q); err != nil {
			return nil, fmt.Errorf("fleet database %s: %w", dsn, err)
		}
		s.db.SetMaxOpenConns(4)
		s.db.SetMaxIdleConns(4)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("fleet database %s: %w", redact(dsn), err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(gd, s.db, sub, opts...)
	if err != nil {
		s.db.Close()
		return nil, fmt.Errorf("fleet database migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("fleet database %s: migrating: %w", redact(dsn), err)
	}
	return s, nil
}

// redact drops a password from a URL for messages.
func redact(dsn string) string {
	if at := strings.Index(dsn, "@"); at > 0 && IsPostgres(dsn) {
		if c := strings.Index(dsn[len("postgres://"):at], ":"); c >= 0 {
			return dsn[:len("postgres://")+c] + ":***" + dsn[at:]
		}
	}
	return dsn
}

// Dialect is SQLite or Postgres.
func (s *Store) Dialect() string { return s.dialect }

// DB is the database handle, for benchmarks that measure its size.
func (s *Store) DB() *sql.DB { return s.db }

// Size is the bytes the database takes: SQLite's pages in use (the
// free list not counted; the WAL's pages are counted once checkpointed),
// PostgreSQL's pg_database_size (tables, indexes, TOAST and dead rows
// not yet vacuumed).
func (s *Store) Size(ctx context.Context) (int64, error) {
	var n int64
	var err error
	if s.dialect == Postgres {
		err = s.db.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()`).Scan(&n)
	}
	return n, err
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// tx runs f in one transaction and commits it.
func (s *Store) tx(ctx context.Context, f func(*sql.Tx) error) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(t); err != nil {
		t.Rollback()
		return err
	}
	return t.Commit()
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// NewID returns a random 128-bit id, hex.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewSecret returns a random 256-bit secret with a readable prefix
// ("plumbjoin_…", "plumbtok_…").
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + "_" + base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret is how secrets (join tokens, API tokens, session ids) are
// stored: hex sha256. They are 256-bit random, so a fast hash suffices.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func isUnique(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "UNIQUE constraint") || strings.Contains(m, "SQLSTATE 23505") || strings.Contains(m, "duplicate key")
}

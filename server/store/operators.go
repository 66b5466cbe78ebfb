package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Roles, weakest first: a viewer reads, an operator also acts on devices
// and rollouts, an admin also manages users, tokens, grants and joins.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles; 0 for an unknown role.
func RoleRank(r string) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// User is an operator who logs in with a password.
type User struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Password string    `json:"-"` // the PHC-style hash
	Created  time.Time `json:"created"`
}

// CreateUser adds a user with a password hash; ErrExists when the name is
// taken.
func (s *Store) CreateUser(ctx context.Context, name, hash string) (*User, error) {
	u := &User{ID: NewID(), Name: name, Password: hash, Created: time.Now().UTC().Truncate(time.Millisecond)}
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (id, name, password, created) VALUES ($1, $2, $3, $4)`, u.ID, u.Name, u.Password, ms(u.Created))
	if isUnique(err) {
		return nil, fmt.Errorf("user %q: %w", name, ErrExists)
	}
	return u, err
}

// UserByName returns a user.
func (s *Store) UserByName(ctx context.Context, name string) (*User, error) {
	var u User
	var c int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, password, created FROM users WHERE name = $1`, name).Scan(&u.ID, &u.Name, &u.Password, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	u.Created = fromMS(c)
	return &u, err
}

// SetPassword replaces a user's password hash.
func (s *Store) SetPassword(ctx context.Context, userID, hash string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE users SET password = $1 WHERE id = $2`, hash, userID)
	return err
}

// SetRole makes a user a member of org with role (replacing a previous
// role there).
func (s *Store) SetRole(ctx context.Context, userID, orgID, role string) error {
	if RoleRank(role) == 0 {
		return fmt.Errorf("role: expected viewer, operator or admin, got %q", role)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO memberships (user_id, org_id, role) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, org_id) DO UPDATE SET role = excluded.role`, userID, orgID, role)
	return err
}

// Role returns a user's role in org, "" when not a member.
func (s *Store) Role(ctx context.Context, userID, orgID string) (string, error) {
	var r string
	err := s.db.QueryRowContext(ctx, `SELECT role FROM memberships WHERE user_id = $1 AND org_id = $2`, userID, orgID).Scan(&r)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return r, err
}

// Membership is one organization a user belongs to.
type Membership struct {
	OrgID   string `json:"org_id"`
	OrgName string `json:"org"`
	Role    string `json:"role"`
}

// Memberships lists a user's organizations.
func (s *Store) Memberships(ctx context.Context, userID string) ([]Membership, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT m.org_id, o.name, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.name`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Membership{}
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.OrgID, &m.OrgName, &m.Role); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Session is a logged-in user.
type Session struct {
	UserID  string
	CSRF    string
	Expires time.Time
}

// CreateSession starts a session; it returns the secret session id (the
// cookie) and the CSRF token. Only the id's hash is kept.
func (s *Store) CreateSession(ctx context.Context, userID string, ttl time.Duration) (id, csrf string, err error) {
	id, csrf = NewSecret("plumbsess"), NewSecret("csrf")
	_, err = s.db.ExecContext(ctx, `INSERT INTO sessions (hash, user_id, csrf, expires) VALUES ($1, $2, $3, $4)`,
		HashSecret(id), userID, csrf, ms(time.Now().Add(ttl)))
	return id, csrf, err
}

// SessionByID returns a live session.
func (s *Store) SessionByID(ctx context.Context, id string) (*Session, error) {
	var se Session
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT user_id, csrf, expires FROM sessions WHERE hash = $1 AND expires > $2`, HashSecret(id), ms(time.Now())).
		Scan(&se.UserID, &se.CSRF, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session: %w", ErrNotFound)
	}
	se.Expires = fromMS(exp)
	return &se, err
}

// DeleteSession ends a session (and any expired ones).
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE hash = $1 OR expires <= $2`, HashSecret(id), ms(time.Now()))
	return err
}

// Token is an API token for scripts: one organization, one role.
type Token struct {
	ID      string    `json:"id"`
	OrgID   string    `json:"org_id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

// CreateToken makes an API token and returns it with its secret; only the
// secret's hash is kept.
func (s *Store) CreateToken(ctx context.Context, orgID, name, role string, ttl time.Duration) (*Token, string, error) {
	if RoleRank(role) == 0 {
		return nil, "", fmt.Errorf("role: expected viewer, operator or admin, got %q", role)
	}
	t := &Token{ID: NewID()[:16], OrgID: orgID, Name: name, Role: role, Created: time.Now().UTC().Truncate(time.Millisecond)}
	if ttl > 0 {
		t.Expires = t.Created.Add(ttl)
	}
	secret := NewSecret("plumbtok")
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (hash, id, org_id, name, role, created, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		HashSecret(secret), t.ID, orgID, name, role, ms(t.Created), ms(t.Expires))
	if err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// TokenBySecret returns a live, unrevoked token.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (*Token, error) {
	var t Token
	var c, e int64
	err := s.db.QueryRowContext(ctx, `SELECT id, org_id, name, role, created, expires FROM api_tokens WHERE hash = $1 AND revoked = 0`, HashSecret(secret)).
		Scan(&t.ID, &t.OrgID, &t.Name, &t.Role, &c, &e)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("API token: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	t.Created, t.Expires = fromMS(c), fromMS(e)
	if !t.Expires.IsZero() && time.Now().After(t.Expires) {
		return nil, fmt.Errorf("API token %s expired: %w", t.ID, ErrNotFound)
	}
	return &t, nil
}

// Tokens lists an organization's live tokens.
func (s *Store) Tokens(ctx context.Context, orgID string) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, org_id, name, role, created, expires FROM api_tokens WHERE org_id = $1 AND revoked = 0 ORDER BY created`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var c, e int64
		if err := rows.Scan(&t.ID, &t.OrgID, &t.Name, &t.Role, &c, &e); err != nil {
			return nil, err
		}
		t.Created, t.Expires = fromMS(c), fromMS(e)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes one of org's tokens.
func (s *Store) RevokeToken(ctx context.Context, orgID, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET revoked = $1 WHERE org_id = $2 AND id = $3 AND revoked = 0`, ms(time.Now()), orgID, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return nil
}

// AuditEntry is one operator action.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	OrgID  string    `json:"org_id"`
	Actor  string    `json:"actor"` // "user alice", "token ci (id)", "cli root"
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Audit records an operator action.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit (id, at, org_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		NewID(), ms(e.At), e.OrgID, e.Actor, e.Action, e.Target, e.Detail)
	return err
}

// AuditLog lists an organization's audit entries, newest first.
func (s *Store) AuditLog(ctx context.Context, orgID string, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, org_id, actor, action, target, detail FROM audit WHERE org_id = $1 ORDER BY at DESC, id LIMIT `+fmt.Sprint(limit), orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.OrgID, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

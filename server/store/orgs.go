package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Org is an organization: a company that owns devices.
type Org struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Created    time.Time `json:"created"`
	MaxDevices int64     `json:"max_devices"`
}

// DefaultMaxDevices caps the devices of an organization unless set.
const DefaultMaxDevices = 1_000_000

// CreateOrg adds an organization; ErrExists when the name is taken.
func (s *Store) CreateOrg(ctx context.Context, name string, maxDevices int64) (*Org, error) {
	if maxDevices <= 0 {
		maxDevices = DefaultMaxDevices
	}
	o := &Org{ID: NewID(), Name: name, Created: time.Now().UTC().Truncate(time.Millisecond), MaxDevices: maxDevices}
	_, err := s.db.ExecContext(ctx, `INSERT INTO orgs (id, name, created, max_devices) VALUES ($1, $2, $3, $4)`, o.ID, o.Name, ms(o.Created), o.MaxDevices)
	if isUnique(err) {
		return nil, fmt.Errorf("organization %q: %w", name, ErrExists)
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

const orgCols = `id, name, created, max_devices`

func scanOrg(row interface{ Scan(...any) error }) (*Org, error) {
	var o Org
	var c int64
	if err := row.Scan(&o.ID, &o.Name, &c, &o.MaxDevices); err != nil {
		return nil, err
	}
	o.Created = fromMS(c)
	return &o, nil
}

// OrgByName returns the organization called name.
func (s *Store) OrgByName(ctx context.Context, name string) (*Org, error) {
	o, err := scanOrg(s.db.QueryRowContext(ctx, `SELECT `+orgCols+` FROM orgs WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("organization %q: %w", name, ErrNotFound)
	}
	return o, err
}

// OrgByID returns the organization with id.
func (s *Store) OrgByID(ctx context.Context, id string) (*Org, error) {
	o, err := scanOrg(s.db.QueryRowContext(ctx, `SELECT `+orgCols+` FROM orgs WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("organization %s: %w", id, ErrNotFound)
	}
	return o, err
}

// Orgs lists every organization by name.
func (s *Store) Orgs(ctx context.Context) ([]Org, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+orgCols+` FROM orgs ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *o)
	}
	return out, rows.Err()
}

// CreateJoinToken makes a join token for org and returns it; only its
// hash is kept.
func (s *Store) CreateJoinToken(ctx context.Context, orgID, name string) (string, error) {
	tok := NewSecret("plumbjoin")
	_, err := s.db.ExecContext(ctx, `INSERT INTO join_tokens (hash, org_id, name, created) VALUES ($1, $2, $3, $4)`,
		HashSecret(tok), orgID, name, ms(time.Now()))
	return tok, err
}

// JoinTokenOrg returns the organization a valid join token belongs to,
// and the token's name.
func (s *Store) JoinTokenOrg(ctx context.Context, token string) (org, name string, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT org_id, name FROM join_tokens WHERE hash = $1 AND revoked = 0`, HashSecret(token)).Scan(&org, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("join token: %w", ErrNotFound)
	}
	return org, name, err
}

// Phases a grant may cover.
const (
	PhaseProvisioning = "provisioning"
	PhaseOS           = "os"
	PhaseApps         = "apps"
)

// ValidPhase reports whether p is a grantable phase.
func ValidPhase(p string) bool { return p == PhaseProvisioning || p == PhaseOS || p == PhaseApps }

// Grant lets Grantee see the Phase of Owner's devices, all of them or
// those in Group.
type Grant struct {
	Owner   string `json:"owner_org"`
	Grantee string `json:"grantee_org"`
	Phase   string `json:"phase"`
	Group   string `json:"group,omitempty"`
}

// AddGrant records a grant (idempotent).
func (s *Store) AddGrant(ctx context.Context, g Grant) error {
	if !ValidPhase(g.Phase) {
		return fmt.Errorf("grant phase: expected provisioning, os or apps, got %q", g.Phase)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO grants (owner_org, grantee, phase, grp, created) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT DO NOTHING`, g.Owner, g.Grantee, g.Phase, g.Group, ms(time.Now()))
	return err
}

// GrantsTo lists the grants an organization holds.
func (s *Store) GrantsTo(ctx context.Context, grantee string) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT owner_org, grantee, phase, grp FROM grants WHERE grantee = $1 ORDER BY owner_org, phase, grp`, grantee)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		if err := rows.Scan(&g.Owner, &g.Grantee, &g.Phase, &g.Group); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// AddEKCA adds PEM CA certificates an organization trusts for joining by
// EK certificate (idempotent).
func (s *Store) AddEKCA(ctx context.Context, orgID, pem string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO org_ek_cas (org_id, sha256, pem, added) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		orgID, HashSecret(pem), pem, ms(time.Now()))
	return err
}

// EKCAs returns each organization's EK CA PEMs, by organization id, in
// the order of the organizations' names.
func (s *Store) EKCAs(ctx context.Context) ([]string, map[string][]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT c.org_id, c.pem FROM org_ek_cas c JOIN orgs o ON o.id = c.org_id ORDER BY o.name, c.sha256`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var order []string
	out := map[string][]string{}
	for rows.Next() {
		var org, pem string
		if err := rows.Scan(&org, &pem); err != nil {
			return nil, nil, err
		}
		if _, seen := out[org]; !seen {
			order = append(order, org)
		}
		out[org] = append(out[org], pem)
	}
	return order, out, rows.Err()
}

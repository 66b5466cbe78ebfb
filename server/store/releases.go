package store

import (
	"context"
	"fmt"
	"time"
)

// ReleaseStages counts, for one release, org's own devices at each stage:
// "running" (reporting it as their version) and, from the release
// outcomes, "trying", "committed" and "failed".
func (s *Store) ReleaseStages(ctx context.Context, org, hardware, version string) (map[string]int64, error) {
	out := map[string]int64{"running": 0, OutcomeTrying: 0, OutcomeCommitted: 0, OutcomeFailed: 0}
	var running int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE org_id = $1 AND hardware = $2 AND version = $3`,
		org, hardware, version).Scan(&running); err != nil {
		return nil, err
	}
	out["running"] = running
	rows, err := s.db.QueryContext(ctx, `SELECT o.outcome, COUNT(*) FROM release_outcomes o JOIN devices d ON d.id = o.device_id
		WHERE d.org_id = $1 AND o.hardware = $2 AND o.version = $3 GROUP BY o.outcome`, org, hardware, version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// MaxAdoption bounds the devices Adoption returns.
const MaxAdoption = 100_000

// Adoption returns, oldest first, when each of org's own devices of
// hardware got version: its first "committed" event for it, or its
// installer's "install: done" of it. At most MaxAdoption times; history
// dropped by retention is not counted.
func (s *Store) Adoption(ctx context.Context, org, hardware, version string) ([]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT MIN(e.at) AS first FROM events e JOIN devices d ON d.id = e.device_id
		WHERE d.org_id = $1 AND d.hardware = $2 AND e.version = $3
		AND (e.kind = $4 OR (e.kind = $5 AND e.summary = 'install: done'))
		GROUP BY e.device_id ORDER BY first LIMIT `+fmt.Sprint(MaxAdoption), org, hardware, version, EventCommitted, EventInstall)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, err
		}
		out = append(out, fromMS(at))
	}
	return out, rows.Err()
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Device is one device as the fleet service knows it.
type Device struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	PublicKey []byte    `json:"public_key"` // PKIX DER of the identity key
	Joined    time.Time `json:"joined"`
	JoinedBy  string    `json:"joined_by"` // "join token <name>", "operator <name>"
	LastSeen  time.Time `json:"last_seen"`
	// From the last report.
	Hardware      string          `json:"hardware,omitempty"`
	Version       string          `json:"version,omitempty"`
	Lifecycle     string          `json:"lifecycle,omitempty"` // provisioning, running
	UpdatePhase   string          `json:"update_phase,omitempty"`
	LastEvent     string          `json:"last_event,omitempty"`
	Verdict       string          `json:"verdict,omitempty"` // last attestation verdict
	WorkloadGroup string          `json:"workload_group,omitempty"`
	Workloads     string          `json:"workloads,omitempty"` // last workload error, "" when fine
	Report        json.RawMessage `json:"report,omitempty"`
	ReportAt      time.Time       `json:"report_at,omitzero"`
	Groups        []string        `json:"groups"`
	Enrolled      time.Time       `json:"attestation_enrolled,omitzero"`
	EKPublic      []byte          `json:"-"`
	AKPublic      []byte          `json:"-"`
	// Phases the reader may see: all three for the owner, the granted
	// ones for another organization. Set by Devices and DeviceFor.
	Phases []string `json:"phases,omitempty"`
}

const deviceCols = `id, org_id, public_key, joined, joined_by, last_seen, hardware, version, lifecycle, update_phase,
	last_event, verdict, workload_group, workloads, report, report_at, ek_public, ak_public, enrolled`

func scanDevice(row interface{ Scan(...any) error }) (*Device, error) {
	var d Device
	var joined, seen, repAt, enrolled int64
	var report string
	if err := row.Scan(&d.ID, &d.OrgID, &d.PublicKey, &joined, &d.JoinedBy, &seen, &d.Hardware, &d.Version, &d.Lifecycle, &d.UpdatePhase,
		&d.LastEvent, &d.Verdict, &d.WorkloadGroup, &d.Workloads, &report, &repAt, &d.EKPublic, &d.AKPublic, &enrolled); err != nil {
		return nil, err
	}
	d.Joined, d.LastSeen, d.ReportAt, d.Enrolled = fromMS(joined), fromMS(seen), fromMS(repAt), fromMS(enrolled)
	if report != "" {
		d.Report = json.RawMessage(report)
	}
	d.Groups = []string{}
	return &d, nil
}

// Device returns a device by id, whoever owns it (for the device API).
func (s *Store) Device(ctx context.Context, id string) (*Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if err := s.loadGroups(ctx, []*Device{d}); err != nil {
		return nil, err
	}
	return d, nil
}

// AddDevice adds a device to its organization (removing it from the
// pending list): ErrExists when the id is taken, ErrFull when the
// organization has its maximum of devices.
func (s *Store) AddDevice(ctx context.Context, d *Device) error {
	now := time.Now()
	return s.tx(ctx, func(t *sql.Tx) error {
		var n, max int64
		if err := t.QueryRowContext(ctx, `SELECT max_devices FROM orgs WHERE id = $1`, d.OrgID).Scan(&max); err != nil {
			return fmt.Errorf("organization %s: %w", d.OrgID, ErrNotFound)
		}
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE org_id = $1`, d.OrgID).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return fmt.Errorf("organization has %d devices, its maximum: %w", n, ErrFull)
		}
		_, err := t.ExecContext(ctx, `INSERT INTO devices (id, org_id, public_key, joined, joined_by, last_seen) VALUES ($1, $2, $3, $4, $5, $6)`,
			d.ID, d.OrgID, d.PublicKey, ms(now), d.JoinedBy, ms(now))
		if isUnique(err) {
			return fmt.Errorf("device %s: %w", d.ID, ErrExists)
		}
		if err != nil {
			return err
		}
		_, err = t.ExecContext(ctx, `DELETE FROM pending_devices WHERE id = $1`, d.ID)
		return err
	})
}

// DeviceQuery selects devices for Devices.
type DeviceQuery struct {
	Org      string // the reader: its own devices and those granted to it
	Search   string // substring of id, version, hardware or last event
	Group    string
	Hardware string
	Version  string
	Verdict  string // the last attestation verdict
	State    string // the update phase (update_phase)
	After    string // ids after this one (paging)
	Limit    int    // default and maximum 1000
}

// MaxPage bounds one page of Devices.
const MaxPage = 1000

// Devices lists the devices q.Org may see, by id, with the phases it may
// see of each.
func (s *Store) Devices(ctx context.Context, q DeviceQuery) ([]*Device, error) {
	if q.Limit <= 0 || q.Limit > MaxPage {
		q.Limit = MaxPage
	}
	grants, err := s.GrantsTo(ctx, q.Org)
	if err != nil {
		return nil, err
	}
	args := []any{q.Org}
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	where := `(d.org_id = $1 OR EXISTS (SELECT 1 FROM grants g WHERE g.grantee = $1 AND g.owner_org = d.org_id
		AND (g.grp = '' OR EXISTS (SELECT 1 FROM device_groups dg WHERE dg.device_id = d.id AND dg.grp = g.grp))))`
	if q.Search != "" {
		p := arg("%" + strings.ToLower(q.Search) + "%")
		where += ` AND (LOWER(d.id) LIKE ` + p + ` OR LOWER(d.version) LIKE ` + p + ` OR LOWER(d.hardware) LIKE ` + p + ` OR LOWER(d.last_event) LIKE ` + p + `)`
	}
	if q.Group != "" {
		where += ` AND EXISTS (SELECT 1 FROM device_groups dg2 WHERE dg2.device_id = d.id AND dg2.grp = ` + arg(q.Group) + `)`
	}
	if q.Hardware != "" {
		where += ` AND d.hardware = ` + arg(q.Hardware)
	}
	if q.Version != "" {
		where += ` AND d.version = ` + arg(q.Version)
	}
	if q.Verdict != "" {
		where += ` AND d.verdict = ` + arg(q.Verdict)
	}
	if q.State != "" {
		where += ` AND d.update_phase = ` + arg(q.State)
	}
	if q.After != "" {
		where += ` AND d.id > ` + arg(q.After)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+prefixed("d.", deviceCols)+` FROM devices d WHERE `+where+` ORDER BY d.id LIMIT `+fmt.Sprint(q.Limit), args...)
	if err != nil {
		return nil, err
	}
	var out []*Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := s.loadGroups(ctx, out); err != nil {
		return nil, err
	}
	for _, d := range out {
		d.Phases = phasesFor(q.Org, d, grants)
	}
	return out, nil
}

// DeviceFor returns device id if org may see it, with the phases it may
// see; ErrNotFound otherwise (the same answer as for no such device).
func (s *Store) DeviceFor(ctx context.Context, org, id string) (*Device, error) {
	d, err := s.Device(ctx, id)
	if err != nil {
		return nil, err
	}
	grants, err := s.GrantsTo(ctx, org)
	if err != nil {
		return nil, err
	}
	d.Phases = phasesFor(org, d, grants)
	if len(d.Phases) == 0 {
		return nil, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	return d, nil
}

// phasesFor is what org may see of d.
func phasesFor(org string, d *Device, grants []Grant) []string {
	if d.OrgID == org {
		return []string{PhaseProvisioning, PhaseOS, PhaseApps}
	}
	var out []string
	for _, g := range grants {
		if g.Owner == d.OrgID && (g.Group == "" || slices.Contains(d.Groups, g.Group)) && !slices.Contains(out, g.Phase) {
			out = append(out, g.Phase)
		}
	}
	return out
}

func prefixed(p, cols string) string {
	fs := strings.Split(cols, ",")
	for i, f := range fs {
		fs[i] = p + strings.TrimSpace(f)
	}
	return strings.Join(fs, ", ")
}

func (s *Store) loadGroups(ctx context.Context, ds []*Device) error {
	if len(ds) == 0 {
		return nil
	}
	byID := map[string]*Device{}
	var args []any
	var ph []string
	for _, d := range ds {
		byID[d.ID] = d
		args = append(args, d.ID)
		ph = append(ph, fmt.Sprintf("$%d", len(args)))
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, grp FROM device_groups WHERE device_id IN (`+strings.Join(ph, ",")+`) ORDER BY grp`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, g string
		if err := rows.Scan(&id, &g); err != nil {
			return err
		}
		byID[id].Groups = append(byID[id].Groups, g)
	}
	return rows.Err()
}

// SetGroups replaces a device's groups (labels).
func (s *Store) SetGroups(ctx context.Context, id string, groups []string) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		if _, err := t.ExecContext(ctx, `DELETE FROM device_groups WHERE device_id = $1`, id); err != nil {
			return err
		}
		for _, g := range groups {
			if _, err := t.ExecContext(ctx, `INSERT INTO device_groups (device_id, grp) VALUES ($1, $2) ON CONFLICT DO NOTHING`, id, g); err != nil {
				return err
			}
		}
		return nil
	})
}

// GroupCount is a group and how many of an organization's devices are in it.
type GroupCount struct {
	Group   string `json:"group"`
	Devices int64  `json:"devices"`
}

// Groups lists the groups of org's own devices.
func (s *Store) Groups(ctx context.Context, org string) ([]GroupCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT dg.grp, COUNT(*) FROM device_groups dg JOIN devices d ON d.id = dg.device_id
		WHERE d.org_id = $1 GROUP BY dg.grp ORDER BY dg.grp`, org)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []GroupCount{}
	for rows.Next() {
		var g GroupCount
		if err := rows.Scan(&g.Group, &g.Devices); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Event is one entry of a device's history.
type Event struct {
	Seq     int64           `json:"seq"`
	At      time.Time       `json:"at"`
	Kind    string          `json:"kind"` // an Event* constant
	Version string          `json:"version,omitempty"`
	Summary string          `json:"summary"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Event kinds, and the phase each belongs to.
const (
	EventJoined      = "joined"      // provisioning
	EventInstall     = "install"     // provisioning: an installer phase
	EventUpdate      = "update"      // os: a change of update phase
	EventCommitted   = "committed"   // os
	EventRolledBack  = "rolled_back" // os
	EventBadRelease  = "bad_release" // os
	EventAttestation = "attestation" // os: a verdict, Detail is the report
	EventWorkload    = "workload"    // apps
	EventOperator    = "operator"    // all: an operator's action on the device
)

// EventPhase is the phase an event kind belongs to ("" for all).
func EventPhase(kind string) string {
	switch kind {
	case EventJoined, EventInstall:
		return PhaseProvisioning
	case EventWorkload:
		return PhaseApps
	case EventOperator:
		return ""
	}
	return PhaseOS
}

// Outcome is how a release went on one device, for rollout decisions.
type Outcome struct {
	Hardware, Version string
	Outcome           string // OutcomeTrying, OutcomeCommitted, OutcomeFailed
	Reason            string
}

// Outcomes.
const (
	OutcomeTrying    = "trying"
	OutcomeCommitted = "committed"
	OutcomeFailed    = "failed"
)

// Report is what one status report changes.
type Report struct {
	At            time.Time
	Body          []byte // the report as the device sent it (JSON)
	Hardware      string
	Version       string
	Lifecycle     string
	UpdatePhase   string
	LastEvent     string
	WorkloadGroup string
	Workloads     string
	Events        []Event // new history entries (Seq is assigned)
	Outcomes      []Outcome
}

// RecordReport stores a device's report, appends its events to the
// history (dropping the oldest past Options.MaxEvents) and records release
// outcomes, in one transaction: when it returns nil, the report is
// committed.
func (s *Store) RecordReport(ctx context.Context, id string, r *Report) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		var seq int64
		err := t.QueryRowContext(ctx, `UPDATE devices SET last_seen = $1, hardware = $2, version = $3, lifecycle = $4, update_phase = $5,
			last_event = $6, workload_group = $7, workloads = $8, report = $9, report_at = $10, event_seq = event_seq + $11
			WHERE id = $12 RETURNING event_seq`,
			ms(r.At), r.Hardware, r.Version, r.Lifecycle, r.UpdatePhase, r.LastEvent, r.WorkloadGroup, r.Workloads, string(r.Body), ms(r.At),
			int64(len(r.Events)), id).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := s.insertEvents(ctx, t, id, seq, r.Events); err != nil {
			return err
		}
		for _, o := range r.Outcomes {
			if _, err := t.ExecContext(ctx, `INSERT INTO release_outcomes (device_id, hardware, version, outcome, reason, at) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (hardware, version, device_id) DO UPDATE SET
				outcome = CASE WHEN release_outcomes.outcome = 'failed' THEN 'failed' ELSE excluded.outcome END,
				reason = CASE WHEN release_outcomes.outcome = 'failed' THEN release_outcomes.reason ELSE excluded.reason END,
				at = excluded.at`, id, o.Hardware, o.Version, o.Outcome, o.Reason, ms(r.At)); err != nil {
				return err
			}
		}
		return nil
	})
}

// insertEvents writes evs as seq-len(evs)+1 .. seq and trims the history.
func (s *Store) insertEvents(ctx context.Context, t *sql.Tx, id string, seq int64, evs []Event) error {
	first := seq - int64(len(evs)) + 1
	for i, e := range evs {
		if _, err := t.ExecContext(ctx, `INSERT INTO events (device_id, seq, at, kind, version, summary, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, first+int64(i), ms(e.At), e.Kind, e.Version, e.Summary, string(e.Detail)); err != nil {
			return err
		}
	}
	if len(evs) > 0 && seq > s.o.MaxEvents {
		if _, err := t.ExecContext(ctx, `DELETE FROM events WHERE device_id = $1 AND seq <= $2`, id, seq-s.o.MaxEvents); err != nil {
			return err
		}
	}
	return nil
}

// AddEvents appends events to a device's history (an operator's action,
// an attestation verdict).
func (s *Store) AddEvents(ctx context.Context, id string, evs ...Event) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		var seq int64
		err := t.QueryRowContext(ctx, `UPDATE devices SET event_seq = event_seq + $1 WHERE id = $2 RETURNING event_seq`, int64(len(evs)), id).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return s.insertEvents(ctx, t, id, seq, evs)
	})
}

// Events returns a device's history, oldest first: at most limit (default
// and maximum 1000) entries with seq > after.
func (s *Store) Events(ctx context.Context, id string, after int64, limit int) ([]Event, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at, kind, version, summary, detail FROM events WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT `+fmt.Sprint(limit), id, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var at int64
		var detail string
		if err := rows.Scan(&e.Seq, &at, &e.Kind, &e.Version, &e.Summary, &detail); err != nil {
			return nil, err
		}
		e.At = fromMS(at)
		if detail != "" {
			e.Detail = json.RawMessage(detail)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneEvents drops history older than before, for every device; it
// returns how many entries went.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE at < $1`, ms(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ReleaseOutcomes counts, for one release, the devices that tried it and
// those among them that failed it (rolled back, failed health checks, or
// failed an attested commit).
func (s *Store) ReleaseOutcomes(ctx context.Context, hardware, version string) (tried, failed int, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), 0)
		FROM release_outcomes WHERE hardware = $1 AND version = $2`, hardware, version).Scan(&tried, &failed)
	return tried, failed, err
}

// ReleaseCount is how many of an organization's devices run a release.
type ReleaseCount struct {
	Hardware string `json:"hardware"`
	Version  string `json:"version"`
	Devices  int64  `json:"devices"`
	Tried    int64  `json:"tried"`
	Failed   int64  `json:"failed"`
}

// Releases lists the releases org's devices run or tried, with counts.
func (s *Store) Releases(ctx context.Context, org string) ([]ReleaseCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT o.hardware, o.version,
		(SELECT COUNT(*) FROM devices d2 WHERE d2.org_id = $1 AND d2.hardware = o.hardware AND d2.version = o.version),
		COUNT(*), COALESCE(SUM(CASE WHEN o.outcome = 'failed' THEN 1 ELSE 0 END), 0)
		FROM release_outcomes o JOIN devices d ON d.id = o.device_id WHERE d.org_id = $1
		GROUP BY o.hardware, o.version ORDER BY o.hardware, o.version`, org)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ReleaseCount{}
	for rows.Next() {
		var r ReleaseCount
		if err := rows.Scan(&r.Hardware, &r.Version, &r.Devices, &r.Tried, &r.Failed); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SaveEnrollment records that a device's AK was bound to its EK.
func (s *Store) SaveEnrollment(ctx context.Context, id string, ek, ak []byte, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET ek_public = $1, ak_public = $2, enrolled = $3 WHERE id = $4`, ek, ak, ms(at), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	return nil
}

// ClearEnrollment forgets a device's EK and AK (an operator's rebind).
func (s *Store) ClearEnrollment(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET ek_public = NULL, ak_public = NULL, enrolled = 0 WHERE id = $1`, id)
	return err
}

// RecordAttestation keeps a verdict and its report in the device's
// history and as its current verdict.
func (s *Store) RecordAttestation(ctx context.Context, id, version, verdict, summary string, report []byte, at time.Time) error {
	return s.tx(ctx, func(t *sql.Tx) error {
		var seq int64
		err := t.QueryRowContext(ctx, `UPDATE devices SET verdict = $1, event_seq = event_seq + 1 WHERE id = $2 RETURNING event_seq`, verdict, id).Scan(&seq)
		if err != nil {
			return err
		}
		return s.insertEvents(ctx, t, id, seq, []Event{{At: at, Kind: EventAttestation, Version: version, Summary: summary, Detail: report}})
	})
}

// LatestAttestation returns the report of a device's last attestation.
func (s *Store) LatestAttestation(ctx context.Context, id string) ([]byte, error) {
	var detail string
	err := s.db.QueryRowContext(ctx, `SELECT detail FROM events WHERE device_id = $1 AND kind = $2 ORDER BY seq DESC LIMIT 1`, id, EventAttestation).Scan(&detail)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %s attestation report: %w", id, ErrNotFound)
	}
	return []byte(detail), err
}

// Pending is a device that tried to join and was refused.
type Pending struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"public_key"`
	Reason    string    `json:"reason"`
	Remote    string    `json:"remote"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Attempts  int64     `json:"attempts"`
}

// RecordPending lists a refused device for operators; ErrFull when max
// devices are pending already and this one is new.
func (s *Store) RecordPending(ctx context.Context, p Pending, max int64) error {
	now := ms(time.Now())
	return s.tx(ctx, func(t *sql.Tx) error {
		res, err := t.ExecContext(ctx, `UPDATE pending_devices SET reason = $1, remote = $2, last_seen = $3, attempts = attempts + 1 WHERE id = $4`,
			p.Reason, p.Remote, now, p.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		var n int64
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM pending_devices`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return fmt.Errorf("%d devices pending already: %w", n, ErrFull)
		}
		_, err = t.ExecContext(ctx, `INSERT INTO pending_devices (id, public_key, reason, remote, first_seen, last_seen, attempts) VALUES ($1, $2, $3, $4, $5, $6, 1)`,
			p.ID, p.PublicKey, p.Reason, p.Remote, now, now)
		return err
	})
}

// PendingDevices lists refused devices, newest first.
func (s *Store) PendingDevices(ctx context.Context, limit int) ([]Pending, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, public_key, reason, remote, first_seen, last_seen, attempts FROM pending_devices ORDER BY last_seen DESC, id LIMIT `+fmt.Sprint(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Pending{}
	for rows.Next() {
		var p Pending
		var f, l int64
		if err := rows.Scan(&p.ID, &p.PublicKey, &p.Reason, &p.Remote, &f, &l, &p.Attempts); err != nil {
			return nil, err
		}
		p.FirstSeen, p.LastSeen = fromMS(f), fromMS(l)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PendingDevice returns one pending device.
func (s *Store) PendingDevice(ctx context.Context, id string) (*Pending, error) {
	var p Pending
	var f, l int64
	err := s.db.QueryRowContext(ctx, `SELECT id, public_key, reason, remote, first_seen, last_seen, attempts FROM pending_devices WHERE id = $1`, id).
		Scan(&p.ID, &p.PublicKey, &p.Reason, &p.Remote, &f, &l, &p.Attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pending device %s: %w", id, ErrNotFound)
	}
	p.FirstSeen, p.LastSeen = fromMS(f), fromMS(l)
	return &p, err
}

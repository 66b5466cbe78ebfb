-- The fleet schema. One text for SQLite and PostgreSQL: times are Unix
-- milliseconds (BIGINT), booleans 0/1, JSON documents TEXT, keys BYTEA
-- (SQLite stores them as blobs). No auto-increment: per-device history is
-- keyed by (device_id, seq), seq counted in devices.event_seq.

-- +goose Up
CREATE TABLE orgs (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	created     BIGINT NOT NULL,
	max_devices BIGINT NOT NULL
);

CREATE TABLE join_tokens (
	hash    TEXT PRIMARY KEY,
	org_id  TEXT NOT NULL REFERENCES orgs(id),
	name    TEXT NOT NULL,
	created BIGINT NOT NULL,
	revoked BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE devices (
	id          TEXT PRIMARY KEY,
	org_id      TEXT NOT NULL REFERENCES orgs(id),
	public_key  BYTEA NOT NULL,
	joined      BIGINT NOT NULL,
	joined_by   TEXT NOT NULL,
	last_seen   BIGINT NOT NULL,
	hardware    TEXT NOT NULL DEFAULT '',
	version     TEXT NOT NULL DEFAULT '',
	lifecycle   TEXT NOT NULL DEFAULT '',
	update_phase TEXT NOT NULL DEFAULT '',
	last_event  TEXT NOT NULL DEFAULT '',
	verdict     TEXT NOT NULL DEFAULT '',
	workload_group TEXT NOT NULL DEFAULT '',
	workloads   TEXT NOT NULL DEFAULT '',
	report      TEXT NOT NULL DEFAULT '',
	report_at   BIGINT NOT NULL DEFAULT 0,
	ek_public   BYTEA,
	ak_public   BYTEA,
	enrolled    BIGINT NOT NULL DEFAULT 0,
	event_seq   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_org ON devices(org_id, id);

CREATE TABLE device_groups (
	device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
	grp       TEXT NOT NULL,
	PRIMARY KEY (device_id, grp)
);
CREATE INDEX device_groups_grp ON device_groups(grp, device_id);

CREATE TABLE events (
	device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
	seq       BIGINT NOT NULL,
	at        BIGINT NOT NULL,
	kind      TEXT NOT NULL,
	version   TEXT NOT NULL DEFAULT '',
	summary   TEXT NOT NULL DEFAULT '',
	detail    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (device_id, seq)
);
CREATE INDEX events_at ON events(at);

CREATE TABLE release_outcomes (
	device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
	hardware  TEXT NOT NULL,
	version   TEXT NOT NULL,
	outcome   TEXT NOT NULL,
	reason    TEXT NOT NULL DEFAULT '',
	at        BIGINT NOT NULL,
	PRIMARY KEY (hardware, version, device_id)
);

CREATE TABLE pending_devices (
	id         TEXT PRIMARY KEY,
	public_key BYTEA NOT NULL,
	reason     TEXT NOT NULL,
	remote     TEXT NOT NULL,
	first_seen BIGINT NOT NULL,
	last_seen  BIGINT NOT NULL,
	attempts   BIGINT NOT NULL
);

CREATE TABLE grants (
	owner_org TEXT NOT NULL REFERENCES orgs(id),
	grantee   TEXT NOT NULL REFERENCES orgs(id),
	phase     TEXT NOT NULL,
	grp       TEXT NOT NULL DEFAULT '',
	created   BIGINT NOT NULL,
	PRIMARY KEY (owner_org, grantee, phase, grp)
);

CREATE TABLE users (
	id       TEXT PRIMARY KEY,
	name     TEXT NOT NULL UNIQUE,
	password TEXT NOT NULL,
	created  BIGINT NOT NULL
);

CREATE TABLE memberships (
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	org_id  TEXT NOT NULL REFERENCES orgs(id),
	role    TEXT NOT NULL,
	PRIMARY KEY (user_id, org_id)
);

CREATE TABLE sessions (
	hash    TEXT PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	csrf    TEXT NOT NULL,
	expires BIGINT NOT NULL
);

CREATE TABLE api_tokens (
	hash    TEXT PRIMARY KEY,
	id      TEXT NOT NULL UNIQUE,
	org_id  TEXT NOT NULL REFERENCES orgs(id),
	name    TEXT NOT NULL,
	role    TEXT NOT NULL,
	created BIGINT NOT NULL,
	expires BIGINT NOT NULL DEFAULT 0,
	revoked BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit (
	id     TEXT PRIMARY KEY,
	at     BIGINT NOT NULL,
	org_id TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_org_at ON audit(org_id, at);

-- +goose Down
DROP TABLE audit;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE memberships;
DROP TABLE users;
DROP TABLE grants;
DROP TABLE pending_devices;
DROP TABLE release_outcomes;
DROP TABLE events;
DROP TABLE device_groups;
DROP TABLE devices;
DROP TABLE join_tokens;
DROP TABLE orgs;

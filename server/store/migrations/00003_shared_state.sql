-- What several plumb serve processes sharing one database must agree on,
-- kept here rather than in each process: attestation nonces and
-- enrollment challenges (a device may get one from one process and answer
-- another), and the TLS session ticket keys (a device's ticket from one
-- process resumes its session on another).

-- +goose Up
CREATE TABLE attest_nonces (
	device_id TEXT NOT NULL,
	nonce     BYTEA NOT NULL,
	created   BIGINT NOT NULL,
	expires   BIGINT NOT NULL,
	PRIMARY KEY (device_id, nonce)
);
CREATE INDEX attest_nonces_expires ON attest_nonces(expires);

CREATE TABLE attest_challenges (
	device_id TEXT PRIMARY KEY,
	challenge TEXT NOT NULL,
	join_org  TEXT NOT NULL DEFAULT '',
	expires   BIGINT NOT NULL
);
CREATE INDEX attest_challenges_expires ON attest_challenges(expires);

CREATE TABLE tls_ticket_keys (
	id      TEXT PRIMARY KEY,
	created BIGINT NOT NULL,
	secret  BYTEA NOT NULL
);

-- +goose Down
DROP TABLE tls_ticket_keys;
DROP TABLE attest_challenges;
DROP TABLE attest_nonces;

-- EK certificate authorities an organization trusts as a join
-- credential: a device whose EK certificate chains to one (and whose EK
-- passes credential activation) joins that organization.

-- +goose Up
CREATE TABLE org_ek_cas (
	org_id TEXT NOT NULL REFERENCES orgs(id),
	sha256 TEXT NOT NULL,
	pem    TEXT NOT NULL,
	added  BIGINT NOT NULL,
	PRIMARY KEY (org_id, sha256)
);

-- +goose Down
DROP TABLE org_ek_cas;

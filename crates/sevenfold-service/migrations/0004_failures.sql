-- Sevenfold Security Service: failure reports, problems, retention and
-- webhooks. Same common dialect as 0001 (see there).

-- Problems: failures grouped by signature (hex SHA-256 of component, kind
-- and the normalised reason and top frames), one row per tenant and
-- signature. status: open | resolved | regression (seen again in a version
-- newer than the one it was resolved in).
CREATE TABLE problems (
    id               TEXT   PRIMARY KEY,
    tenant_id        TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    signature        TEXT   NOT NULL,
    component_id     TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    title            TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('open', 'resolved', 'regression')),
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    occurrences      BIGINT NOT NULL,
    last_version     TEXT   NOT NULL,
    resolved_at      BIGINT,
    resolved_version TEXT,
    UNIQUE (tenant_id, signature)
);
CREATE INDEX problems_recent ON problems (tenant_id, last_seen, id);

-- Which devices and versions a problem has been seen on.
CREATE TABLE problem_devices (
    problem_id TEXT NOT NULL REFERENCES problems (id) ON DELETE CASCADE,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (problem_id, device_id)
);
CREATE TABLE problem_versions (
    problem_id TEXT NOT NULL REFERENCES problems (id) ON DELETE CASCADE,
    version    TEXT NOT NULL,
    PRIMARY KEY (problem_id, version)
);

-- Every record a device uploaded (and every failed attestation the
-- service recorded, with the attestation's ID as record_id). The primary
-- key makes delivery idempotent: a resent record is not stored again.
CREATE TABLE failure_reports (
    device_id         TEXT   NOT NULL,
    record_id         TEXT   NOT NULL,
    tenant_id         TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at                BIGINT NOT NULL,
    received_at       BIGINT NOT NULL,
    component_id      TEXT   NOT NULL,
    component_version TEXT   NOT NULL,
    kind              TEXT   NOT NULL,
    reason            TEXT   NOT NULL,
    frames            TEXT   NOT NULL,
    details           TEXT   NOT NULL,
    problem_id        TEXT,
    PRIMARY KEY (device_id, record_id)
);
-- The report is newest first by time of receipt; retention purges by it.
CREATE INDEX failure_reports_recent ON failure_reports (tenant_id, received_at, device_id, record_id);

-- Per-tenant retention of failure reports (default 14 days when absent).
CREATE TABLE failure_settings (
    tenant_id      TEXT   PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    retention_days BIGINT NOT NULL CHECK (retention_days BETWEEN 1 AND 3650)
);

-- Webhooks. The HMAC secret is stored wrapped under the server's CA wrap
-- key (AES-256-GCM), like tenant CA keys.
CREATE TABLE webhooks (
    id             TEXT   PRIMARY KEY,
    tenant_id      TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url            TEXT   NOT NULL,
    events         TEXT   NOT NULL,
    wrapped_secret BYTEA  NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id);

-- Outgoing notifications, shared by all replicas: a replica claims a due
-- delivery by moving next_attempt_at forward in a conditional UPDATE.
CREATE TABLE webhook_deliveries (
    id              TEXT   PRIMARY KEY,
    webhook_id      TEXT   NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (delivered_at, next_attempt_at);

-- Failed attestations are copied into failure_reports by housekeeping;
-- this index keeps that scan short.
CREATE INDEX attestations_verdict ON attestations (verdict, at);

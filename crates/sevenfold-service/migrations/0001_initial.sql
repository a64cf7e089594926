-- Sevenfold Security Service: initial schema.
--
-- ONE file serves both SQLite and PostgreSQL, because every statement below
-- is in their common dialect. The rules that make that possible (see
-- `store/mod.rs` for the why):
--   * ids are TEXT (UUIDs, or lowercase hex for device ids, key ids and
--     image digests);
--   * timestamps are BIGINT unix milliseconds;
--   * flags are BIGINT 0/1 with a CHECK: sqlx's Any driver cannot decode a
--     SQLite column declared BOOLEAN;
--   * binary values (DER certificates and keys) are BYTEA: PostgreSQL's
--     binary type, which SQLite accepts as a type name (NUMERIC affinity,
--     which never converts a blob);
--   * enumerations are TEXT with a CHECK listing the allowed values.
-- Cross-tenant references are composite foreign keys on (tenant_id, id), so
-- the schema itself refuses, say, a device in another tenant's group.

CREATE TABLE users (
    id           TEXT   PRIMARY KEY,
    name         TEXT   NOT NULL UNIQUE,
    server_admin BIGINT NOT NULL DEFAULT 0 CHECK (server_admin IN (0, 1)),
    created_at   BIGINT NOT NULL
);

-- API tokens are stored only as the hex SHA-256 of the token.
CREATE TABLE api_tokens (
    token_hash TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE tenants (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE roles (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT NOT NULL CHECK (role IN ('administrator', 'contributor', 'reader')),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX roles_user ON roles (user_id);

CREATE TABLE products (
    id          TEXT   PRIMARY KEY,
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id),
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE device_groups (
    id              TEXT   PRIMARY KEY,
    tenant_id       TEXT   NOT NULL,
    product_id      TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    description     TEXT   NOT NULL,
    update_policy   TEXT   NOT NULL CHECK (update_policy IN ('accept-all', 'no-app-updates')),
    runtime_feed    TEXT   NOT NULL CHECK (runtime_feed IN ('stable', 'evaluation')),
    rollout_percent BIGINT NOT NULL CHECK (rollout_percent BETWEEN 0 AND 100),
    created_at      BIGINT NOT NULL,
    UNIQUE (product_id, name),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
CREATE INDEX device_groups_tenant ON device_groups (tenant_id, product_id);

-- Trusted server-wide: the certificates that endorse device keys.
CREATE TABLE manufacturer_cas (
    fingerprint TEXT   PRIMARY KEY,
    subject     TEXT   NOT NULL,
    cert_der    BYTEA  NOT NULL,
    added_at    BIGINT NOT NULL
);

-- The device id is the primary key: a claim is exclusive across tenants and
-- across server replicas, enforced by the database.
CREATE TABLE devices (
    id                       TEXT   PRIMARY KEY,
    tenant_id                TEXT   NOT NULL REFERENCES tenants (id),
    group_id                 TEXT,
    public_key_der           BYTEA  NOT NULL,
    endorsement_der          BYTEA  NOT NULL,
    manufacturer_fingerprint TEXT   NOT NULL,
    mode                     TEXT   NOT NULL CHECK (mode IN ('field', 'development')),
    claimed_at               BIGINT NOT NULL,
    revoked_at               BIGINT,
    last_seen                BIGINT,
    FOREIGN KEY (tenant_id, group_id) REFERENCES device_groups (tenant_id, id)
);
-- Keyset pagination: WHERE tenant_id = ? [AND group_id = ?] AND id > ? ORDER BY id.
CREATE INDEX devices_tenant ON devices (tenant_id, id);
CREATE INDEX devices_group ON devices (tenant_id, group_id, id);

CREATE TABLE transfers (
    id           TEXT   PRIMARY KEY,
    device_id    TEXT   NOT NULL REFERENCES devices (id),
    from_tenant  TEXT   NOT NULL REFERENCES tenants (id),
    to_tenant    TEXT   NOT NULL REFERENCES tenants (id),
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'completed', 'cancelled')),
    requested_by TEXT   NOT NULL,
    requested_at BIGINT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT
);
-- At most one pending transfer per device.
CREATE UNIQUE INDEX transfers_one_pending ON transfers (device_id) WHERE status = 'pending';
CREATE INDEX transfers_from ON transfers (from_tenant);
CREATE INDEX transfers_to ON transfers (to_tenant);

CREATE TABLE signing_keys (
    tenant_id  TEXT   NOT NULL REFERENCES tenants (id),
    key_id     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    spki_der   BYTEA  NOT NULL,
    added_at   BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, key_id)
);

-- Image metadata; the bytes live in the blob store under `blob_key`.
CREATE TABLE images (
    tenant_id        TEXT   NOT NULL REFERENCES tenants (id),
    id               TEXT   NOT NULL,
    component_id     TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    version          TEXT   NOT NULL,
    security_version BIGINT NOT NULL,
    image_type       TEXT   NOT NULL,
    size             BIGINT NOT NULL,
    signer_key_id    TEXT   NOT NULL,
    blob_key         TEXT   NOT NULL,
    manifest_json    TEXT   NOT NULL,
    uploaded_at      BIGINT NOT NULL,
    uploaded_by      TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, signer_key_id) REFERENCES signing_keys (tenant_id, key_id)
);
CREATE INDEX images_component ON images (tenant_id, component_id);

-- The operator audit log: append-only, hash-chained (see store/audit.rs).
-- `seq` is the primary key, so two replicas appending at once cannot both
-- write the same position: one of them fails and retries on the new head.
-- No foreign keys: an entry outlives whatever it names, and refused attempts
-- may name tenants that do not exist.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    tenant_id TEXT,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    source    TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);

-- One row, updated at the start of every append: the row lock (PostgreSQL)
-- or the write lock (SQLite) it takes serialises appenders across processes,
-- so the chain's head is read only by the writer that will extend it.
CREATE TABLE audit_head (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    appends BIGINT NOT NULL
);
INSERT INTO audit_head (id, appends) VALUES (1, 0);

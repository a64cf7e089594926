-- Sevenfold Security Service: attestation, device identity and the device API.
-- Same common dialect as 0001 (see there).

-- Each tenant's device CAs. The newest generation issues; all unexpired
-- generations are published (rotation overlap). The private key is stored
-- wrapped (AES-256-GCM) under the server's CA wrap key, never in clear.
CREATE TABLE tenant_cas (
    tenant_id   TEXT   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    generation  BIGINT NOT NULL,
    cert_der    BYTEA  NOT NULL,
    wrapped_key BYTEA  NOT NULL,
    fingerprint TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, generation)
);

-- Attestation nonces: random, single use (deleted when used), short-lived.
-- In the database so that any replica can check a nonce another issued.
CREATE TABLE attestation_nonces (
    nonce      TEXT   PRIMARY KEY,
    device_id  TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX attestation_nonces_expiry ON attestation_nonces (expires_at);

-- Fixed-window counters for rate limits on unauthenticated device calls.
CREATE TABLE rate_limits (
    bucket       TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- Runtime builds the service accepts in attestations (hex SHA-256 of the
-- runtime executable), server-wide.
CREATE TABLE runtime_releases (
    digest     TEXT   PRIMARY KEY,
    version    TEXT   NOT NULL,
    added_at   BIGINT NOT NULL,
    added_by   TEXT   NOT NULL,
    revoked_at BIGINT
);

-- Every attestation verdict with its reasons and what was measured.
CREATE TABLE attestations (
    id                    TEXT   PRIMARY KEY,
    device_id             TEXT   NOT NULL,
    tenant_id             TEXT,
    at                    BIGINT NOT NULL,
    verdict               TEXT   NOT NULL CHECK (verdict IN ('pass', 'fail')),
    reasons               TEXT   NOT NULL,
    measurements          TEXT   NOT NULL,
    certificate_serial    TEXT,
    certificate_not_after BIGINT,
    source                TEXT   NOT NULL
);
CREATE INDEX attestations_device ON attestations (device_id, at);

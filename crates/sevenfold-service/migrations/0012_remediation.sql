-- Sevenfold Security Service: restricted update sessions for devices that
-- failed attestation on their software only (a revoked runtime release, an
-- unknown image). Same common dialect as 0001 (see there).

-- One session per device at most (a new failing verdict replaces it). The
-- token itself is never stored, only its SHA-256; `components` is a JSON
-- array of the component IDs whose targets the session may fetch
-- ("runtime" for any runtime image).
CREATE TABLE remediation_sessions (
    token_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    device_id TEXT NOT NULL UNIQUE,
    components TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX remediation_sessions_expiry ON remediation_sessions (expires_at);

-- Sevenfold Security Service: delta updates and update windows. Same common
-- dialect as 0001 (see there).

-- Binary deltas published with a deployment: for one target (the package
-- file with `target_sha256`), a delta from the package file a device may
-- already have (`base_sha256`). The delta file is a blob; its hash and
-- length are signed into the target's custom metadata.
CREATE TABLE deployment_deltas (
    tenant_id     TEXT   NOT NULL,
    deployment_id TEXT   NOT NULL,
    target_sha256 TEXT   NOT NULL,
    base_sha256   TEXT   NOT NULL,
    format        TEXT   NOT NULL CHECK (format IN ('bsdiff4')),
    name          TEXT   NOT NULL,
    delta_sha256  TEXT   NOT NULL,
    delta_length  BIGINT NOT NULL,
    blob_key      TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, target_sha256, base_sha256),
    FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deployment_deltas_file ON deployment_deltas (delta_sha256);

-- A device group's maintenance window ("HH:MM-HH:MM", UTC), during which
-- updates that restart apps may be applied; NULL: any time.
ALTER TABLE device_groups ADD COLUMN update_window TEXT;

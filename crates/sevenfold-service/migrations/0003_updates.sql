-- Sevenfold Security Service: TUF repositories per device group, deployments
-- and per-device update progress. Same common dialect as 0001 (see there).

-- The signing keys of each group's TUF repository. Root and targets keys
-- belong to the tenant; snapshot and timestamp keys are the service's online
-- keys. Private keys are wrapped (AES-256-GCM) under the server's wrap key.
CREATE TABLE tuf_keys (
    tenant_id   TEXT   NOT NULL,
    group_id    TEXT   NOT NULL,
    role        TEXT   NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    key_id      TEXT   NOT NULL,
    wrapped_key BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT,
    PRIMARY KEY (group_id, role, key_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES device_groups (tenant_id, id) ON DELETE CASCADE
);

-- Every signed metadata file of every group's repository, by role and
-- version (consistent snapshots: old versions stay servable). `body` holds
-- the exact bytes whose length and hash other roles record.
CREATE TABLE tuf_metadata (
    tenant_id  TEXT   NOT NULL,
    group_id   TEXT   NOT NULL,
    role       TEXT   NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
    version    BIGINT NOT NULL,
    body       BYTEA  NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, role, version),
    FOREIGN KEY (tenant_id, group_id) REFERENCES device_groups (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX tuf_metadata_expiry ON tuf_metadata (role, expires_at);

-- Deployments: images published to a group, with a phased rollout.
CREATE TABLE deployments (
    id                  TEXT   PRIMARY KEY,
    tenant_id           TEXT   NOT NULL,
    group_id            TEXT   NOT NULL,
    status              TEXT   NOT NULL CHECK (status IN ('active', 'halted', 'cancelled', 'superseded')),
    percent             BIGINT NOT NULL CHECK (percent BETWEEN 0 AND 100),
    max_failure_percent BIGINT NOT NULL CHECK (max_failure_percent BETWEEN 0 AND 100),
    halt_reason         TEXT,
    created_by          TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES device_groups (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deployments_group ON deployments (group_id, created_at);

CREATE TABLE deployment_images (
    tenant_id     TEXT   NOT NULL,
    deployment_id TEXT NOT NULL,
    image_id      TEXT NOT NULL,
    -- SHA-256 and length of the whole package file: the TUF target's hash
    -- (the image ID is the package digest, which excludes the signature).
    file_sha256   TEXT   NOT NULL,
    file_length   BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, image_id),
    FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, image_id) REFERENCES images (tenant_id, id)
);
CREATE INDEX deployment_images_file ON deployment_images (file_sha256);

-- What each device reported for a deployment.
CREATE TABLE deployment_devices (
    tenant_id     TEXT   NOT NULL,
    deployment_id TEXT   NOT NULL,
    device_id     TEXT   NOT NULL,
    state         TEXT   NOT NULL CHECK (state IN ('downloading', 'installed', 'failed', 'rolled-back')),
    reason        TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, device_id),
    FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id) ON DELETE CASCADE
);

-- SQLite: store failure reports in the error report's order.
--
-- The report (and its export, a million rows in one pass) reads a tenant's
-- failures newest first by time of receipt. With a rowid table every index
-- entry cost a second B-tree lookup for the row; clustered by the report's
-- key (WITHOUT ROWID), the export is one range scan. Idempotent delivery
-- keeps its unique (device_id, record_id), now a secondary index.
CREATE TABLE failure_reports_by_receipt (
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
    PRIMARY KEY (tenant_id, received_at, device_id, record_id)
) WITHOUT ROWID;
INSERT INTO failure_reports_by_receipt (device_id, record_id, tenant_id, at, received_at,
    component_id, component_version, kind, reason, frames, details, problem_id)
    SELECT device_id, record_id, tenant_id, at, received_at, component_id,
    component_version, kind, reason, frames, details, problem_id FROM failure_reports;
DROP TABLE failure_reports;
ALTER TABLE failure_reports_by_receipt RENAME TO failure_reports;
CREATE UNIQUE INDEX failure_reports_record ON failure_reports (device_id, record_id);

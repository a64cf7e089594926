-- Sevenfold Security Service: what the dashboard aggregates, kept where one
-- query can count 100 000 devices without reading their histories.
-- Same common dialect as 0001 (see there).

-- Each device's latest authentic verdict (a pass, or a refusal of evidence
-- its key signed) and the software it measured then, written with the
-- verdict (`Store::record_verdict`). `app_versions` is the applications of
-- the last boot as `name version` joined by ", ", sorted by name.
ALTER TABLE devices ADD COLUMN attestation_verdict TEXT CHECK (attestation_verdict IN ('pass', 'fail'));
ALTER TABLE devices ADD COLUMN attested_at BIGINT;
ALTER TABLE devices ADD COLUMN certificate_not_after BIGINT;
ALTER TABLE devices ADD COLUMN runtime_version TEXT;
ALTER TABLE devices ADD COLUMN app_versions TEXT;

UPDATE devices SET
    attested_at = (SELECT MAX(a.at) FROM attestations a
                   WHERE a.device_id = devices.id AND a.tenant_id = devices.tenant_id),
    certificate_not_after = (SELECT MAX(a.certificate_not_after) FROM attestations a
                             WHERE a.device_id = devices.id AND a.tenant_id = devices.tenant_id);
UPDATE devices SET attestation_verdict = (
    SELECT a.verdict FROM attestations a
    WHERE a.device_id = devices.id AND a.tenant_id = devices.tenant_id AND a.at = devices.attested_at
    ORDER BY a.verdict DESC LIMIT 1)
WHERE attested_at IS NOT NULL;

-- A problem's occurrences per day (unix day of the record's time), counted
-- at ingest, so its chart needs no scan of the reports. Purged with them.
CREATE TABLE problem_days (
    problem_id  TEXT   NOT NULL REFERENCES problems (id) ON DELETE CASCADE,
    day         BIGINT NOT NULL,
    occurrences BIGINT NOT NULL,
    PRIMARY KEY (problem_id, day)
);
INSERT INTO problem_days (problem_id, day, occurrences)
    SELECT problem_id, at / 86400000, COUNT(*) FROM failure_reports
    WHERE problem_id IS NOT NULL GROUP BY problem_id, at / 86400000;

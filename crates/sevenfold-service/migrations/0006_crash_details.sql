-- Sevenfold Security Service: optional crash details per device group.
-- Same common dialect as 0001 (see there): a flag is BIGINT 0/1.
--
-- Off (the default, for privacy): devices send a failure's reason and the
-- top frames that identify it, and the service keeps no more. On: devices
-- also send the app's output tail and the full backtrace.
ALTER TABLE device_groups
    ADD COLUMN crash_details BIGINT NOT NULL DEFAULT 0 CHECK (crash_details IN (0, 1));

-- A problem's latest occurrence, so `problem show` can present one record
-- in full (reason, frames and, with crash details on, the output tail)
-- without searching the reports.
ALTER TABLE problems ADD COLUMN latest_device_id TEXT;
ALTER TABLE problems ADD COLUMN latest_record_id TEXT;

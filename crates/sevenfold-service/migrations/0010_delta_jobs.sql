-- Sevenfold Security Service: deltas made after `deployment create`
-- returns, from every version a group's devices may run. Same common
-- dialect as 0001 (see there).

-- Whether a deployment's deltas are still being made ('making') or done
-- ('ready'), and until when (unix ms) the replica making them holds the
-- job; past that, any replica's housekeeping takes it over (a crash mid-way
-- only delays the deltas). The deltas themselves are `deployment_deltas`
-- rows, written with 'ready' in one transaction after their blobs.
ALTER TABLE deployments ADD COLUMN deltas_state TEXT NOT NULL DEFAULT 'ready'
    CHECK (deltas_state IN ('making', 'ready'));
ALTER TABLE deployments ADD COLUMN deltas_claimed_until BIGINT;
CREATE INDEX deployments_deltas ON deployments (deltas_state, deltas_claimed_until);

-- The application images of each device's last measured boot (image IDs,
-- that is package digests, as "component_id=digest" joined by " ",
-- sorted), written with the verdict like the other fleet columns: which
-- versions the group's devices run, so a deployment gets deltas from them.
-- NULL until the device's next attestation.
ALTER TABLE devices ADD COLUMN measured_images TEXT;

-- Carrier-aware dialling, part 2 (docs/trunks.md): the claim paces each trunk, caps its calls
-- in flight, picks each call's caller ID and honours a carrier's back-off.
--
-- trunks.next_start_at: the earliest start of the trunk's next call (the claim gives each call
--   a slot from here, 1/max_cps apart); refusals / backoff_until: the carrier's capacity
--   refusals in a row and the moment the trunk may dial again.
-- batch_entries.trunk_id / caller_id / dial_at: what the entry's current claim goes out with,
--   and when (its slot); copied to the call log by mark_dispatched. carrier_refusals: its calls
--   the carrier refused for capacity, which use no attempt (sql/034).
-- caller_id_days: calls per caller ID per day (the tenant's zone), counted by the claim, so
--   that no daily cap is passed whichever daemon claims.

ALTER TABLE batchctl.trunks
    ADD COLUMN next_start_at timestamptz,  -- null: no call yet
    ADD COLUMN refusals integer NOT NULL DEFAULT 0 CHECK (refusals >= 0),
    ADD COLUMN backoff_until timestamptz;

ALTER TABLE batchctl.batch_entries
    ADD COLUMN trunk_id uuid,
    ADD COLUMN caller_id text,
    ADD COLUMN dial_at timestamptz,
    ADD COLUMN carrier_refusals integer NOT NULL DEFAULT 0 CHECK (carrier_refusals >= 0);
CREATE INDEX entries_in_flight_by_trunk ON batchctl.batch_entries (trunk_id)
    WHERE status IN ('running', 'dispatched') AND trunk_id IS NOT NULL;

CREATE TABLE batchctl.caller_id_days (
    tenant_id uuid NOT NULL,
    phone     text NOT NULL,
    day       date NOT NULL,
    calls     integer NOT NULL DEFAULT 0 CHECK (calls >= 0),
    PRIMARY KEY (tenant_id, phone, day)
);
ALTER TABLE batchctl.caller_id_days ENABLE ROW LEVEL SECURITY;
CREATE POLICY worker_all ON batchctl.caller_id_days TO batchctl_worker USING (true);
GRANT SELECT ON batchctl.caller_id_days TO batchctl_tenant, batchctl_worker;

-- claim_entries returns the trunk, caller ID and slot of each call: a new row type.
DROP FUNCTION IF EXISTS batchctl.claim_entries(text, integer, integer);

-- What the trunks' part of the claim says of one call (sql/051 trunk_grants).
CREATE TYPE batchctl.trunk_grant AS (
    entry_id  uuid,
    trunk_id  uuid,
    caller_id text,
    dial_at   timestamptz,
    reason    text);

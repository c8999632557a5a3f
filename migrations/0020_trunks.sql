-- Carrier-aware dialling, part 1 (docs/trunks.md): a tenant's SIP trunks and their caller-ID
-- pools, managed through the tenant API (sql/058). The claim's pacing, caller-ID choice and
-- back-off come with the columns they need in a later migration.
--
-- trunks: one per LiveKit SIP trunk a tenant dials through, with the carrier's limits:
--   max_cps (new calls per second, fractional: 0.5 is one call every 2 s) and an optional
--   max_concurrent (calls in flight on it). A tenant's first trunk (created_at, id) is its
--   default.
-- caller_ids: the numbers a trunk presents, each with an optional daily cap; country and
--   local_prefix (the number's longest prefix in phone_prefixes: a NANP area code, else the
--   country calling code) are worked out when added, for local presence.
-- call_logs.trunk_id / caller_id: the trunk and caller ID a call went out with (null: none
--   configured), counted by trunk_status.

CREATE TABLE batchctl.trunks (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES batchctl.tenants (id) ON DELETE CASCADE,
    name             text NOT NULL,
    livekit_trunk_id text NOT NULL,
    max_cps          numeric NOT NULL CHECK (max_cps > 0 AND max_cps <= 1000),
    max_concurrent   integer CHECK (max_concurrent > 0),
    -- The moment of the insert itself, not of its transaction: the first of two trunks made in
    -- one transaction is the default.
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE batchctl.caller_ids (
    tenant_id    uuid NOT NULL,
    trunk_id     uuid NOT NULL,
    phone        text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    daily_cap    integer CHECK (daily_cap > 0),
    country      text,
    local_prefix text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, trunk_id, phone),
    FOREIGN KEY (tenant_id, trunk_id) REFERENCES batchctl.trunks (tenant_id, id) ON DELETE CASCADE
);

ALTER TABLE batchctl.call_logs ADD COLUMN trunk_id uuid, ADD COLUMN caller_id text;
-- trunk_status' "started in the last second and minute" and a caller ID's calls today.
CREATE INDEX call_logs_by_trunk ON batchctl.call_logs (trunk_id, started_at)
    WHERE trunk_id IS NOT NULL;

ALTER TABLE batchctl.trunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.caller_ids ENABLE ROW LEVEL SECURITY;
-- (tenant_isolation: sql/015, with the other tables.)
CREATE POLICY worker_all ON batchctl.trunks TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.caller_ids TO batchctl_worker USING (true);
GRANT SELECT ON batchctl.trunks, batchctl.caller_ids TO batchctl_tenant, batchctl_worker;

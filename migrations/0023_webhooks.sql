-- Outbound webhooks (docs/webhooks.md): a tenant's endpoints, and a transactional outbox of
-- deliveries written by the triggers that make the transitions they report (sql/056; the API
-- and the daemon's side: sql/059).
--
-- webhook_endpoints: a URL of the tenant's, the event types it wants (null: all) and its
--   Standard Webhooks secret (whsec_…); disabled_at / disabled_reason once a 410 or a whole
--   failed retry schedule turned it off (replay_webhooks turns it back on).
-- webhook_deliveries: one row per event per endpoint, in the transaction of the transition.
--   message_id is the webhook-id, the same for every attempt; ordering_key (the entry, else
--   the batch) orders the deliveries of one endpoint: one is sent only when no earlier one of
--   its key is pending. Claimed with a lease (claimed_by, lease_until), SKIP LOCKED. The
--   payload's data is rendered by the first claim for a call or an entry (final rows, which
--   never change), off the transition's path; a batch's start, pause and resume keep the
--   counters of their moment.
-- webhook_attempts: every attempt's answer, for webhook_deliveries().

CREATE TABLE batchctl.webhook_endpoints (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES batchctl.tenants (id) ON DELETE CASCADE,
    url             text NOT NULL,
    events          text[],
    secret          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE batchctl.webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id        uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    batch_id         uuid NOT NULL,
    message_id       text NOT NULL,
    event_type       text NOT NULL,
    ordering_key     uuid NOT NULL,
    object_id        uuid NOT NULL,  -- the call, entry or batch the event is about
    payload          jsonb NOT NULL,  -- without "data" until its first claim renders it
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by       text,
    lease_until      timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    -- No foreign key to its endpoint: concurrent transitions would all lock the endpoint's row
    -- (KEY SHARE, as multixacts) on every insert. remove_webhook deletes an endpoint's
    -- deliveries itself.
    PRIMARY KEY (tenant_id, id)
);
-- The claim's scan, and its "an earlier one of this key is pending" probe: pending rows only.
CREATE INDEX webhook_deliveries_due ON batchctl.webhook_deliveries (next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending_by_key
    ON batchctl.webhook_deliveries (endpoint_id, ordering_key, id) WHERE status = 'pending';
-- A batch's deliveries (batch show, the report) and prune(). (Listings per endpoint read the
-- tenant's rows by the primary key: an index more on the transitions' path costs more.)
CREATE INDEX webhook_deliveries_by_batch ON batchctl.webhook_deliveries (batch_id, status);

CREATE TABLE batchctl.webhook_attempts (
    tenant_id   uuid NOT NULL,
    delivery_id bigint NOT NULL,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    elapsed_ms  numeric,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES batchctl.webhook_deliveries (tenant_id, id)
        ON DELETE CASCADE
);

ALTER TABLE batchctl.webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE batchctl.webhook_attempts ENABLE ROW LEVEL SECURITY;
-- (tenant_isolation: sql/015, with the other tables.)
CREATE POLICY worker_all ON batchctl.webhook_endpoints TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.webhook_deliveries TO batchctl_worker USING (true);
CREATE POLICY worker_all ON batchctl.webhook_attempts TO batchctl_worker USING (true);
GRANT SELECT ON batchctl.webhook_endpoints, batchctl.webhook_deliveries, batchctl.webhook_attempts
    TO batchctl_tenant, batchctl_worker;

-- What a trigger hands queue_webhooks (sql/056): one event of a tenant's.
CREATE TYPE batchctl.webhook_event AS (
    tenant_id  uuid,
    batch_id   uuid,
    type       text,
    key        uuid,
    message_id text,
    object_id  uuid);

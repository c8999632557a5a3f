-- Hang-up outbox: one row per LiveKit room that must be deleted (a cancelled batch's or entry's
-- live call, a call the sweep failed). Written in the transaction that decides the hang-up, so a
-- daemon that was down or missed the NOTIFY still finds it; the daemon deletes the room and
-- marks the row done. Rows are claimed pgmq-style: a claim pushes next_attempt_at forward (a
-- visibility timeout) instead of holding a lease.

CREATE TABLE batchctl.hangups (
    room_name       text NOT NULL,
    tenant_id       uuid NOT NULL,
    batch_id        uuid NOT NULL,
    call_log_id     uuid NOT NULL,
    reason          text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    done_at         timestamptz,
    PRIMARY KEY (room_name),
    FOREIGN KEY (tenant_id, call_log_id) REFERENCES batchctl.call_logs (tenant_id, id)
        ON DELETE CASCADE
);

CREATE INDEX hangups_pending ON batchctl.hangups (next_attempt_at) WHERE done_at IS NULL;

GRANT SELECT ON batchctl.hangups TO batchctl_tenant, batchctl_worker;
ALTER TABLE batchctl.hangups ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON batchctl.hangups TO batchctl_tenant
    USING (tenant_id = nullif(current_setting('batchctl.tenant_id', true), '')::uuid);
CREATE POLICY worker_all ON batchctl.hangups TO batchctl_worker USING (true);

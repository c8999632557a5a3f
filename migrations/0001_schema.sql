-- batchctl schema: types, tables, indexes.
-- Functions, triggers and views live in sql/ and are re-applied on every upgrade.
-- Every table carries tenant_id and every cross-table key includes it, so the schema can be
-- distributed by tenant (Citus) without changes.

CREATE SCHEMA IF NOT EXISTS batchctl;

CREATE TYPE batchctl.batch_status AS ENUM
    ('pending', 'running', 'paused', 'completed', 'cancelled', 'failed');

CREATE TYPE batchctl.entry_status AS ENUM
    ('queued', 'running', 'dispatched', 'completed', 'failed', 'declined', 'cancelled');

CREATE TYPE batchctl.call_status AS ENUM
    ('in_queue', 'ringing', 'ongoing',
     'ended', 'completed',
     'failed', 'error', 'not_reachable',
     'declined', 'rejected', 'no_answer', 'busy', 'voicemail',
     'cancelled');

CREATE TYPE batchctl.report_status AS ENUM ('pending', 'sending', 'sent', 'failed', 'skipped');

CREATE TABLE batchctl.tenants (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                 text NOT NULL CHECK (length(btrim(name)) > 0),
    max_concurrent_calls integer NOT NULL DEFAULT 3 CHECK (max_concurrent_calls > 0),
    timezone             text NOT NULL DEFAULT 'UTC',
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batchctl.dnc_numbers (
    tenant_id  uuid NOT NULL REFERENCES batchctl.tenants (id) ON DELETE CASCADE,
    phone      text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, phone)
);

-- Counters per entry status are kept by triggers; the CHECK makes "sum of counters = total"
-- hold at every commit, not just in tests.
CREATE TABLE batchctl.batches (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES batchctl.tenants (id),
    status           batchctl.batch_status NOT NULL DEFAULT 'pending',
    options          jsonb NOT NULL,
    total            integer NOT NULL DEFAULT 0 CHECK (total >= 0),
    queued_count     integer NOT NULL DEFAULT 0 CHECK (queued_count >= 0),
    running_count    integer NOT NULL DEFAULT 0 CHECK (running_count >= 0),
    dispatched_count integer NOT NULL DEFAULT 0 CHECK (dispatched_count >= 0),
    completed_count  integer NOT NULL DEFAULT 0 CHECK (completed_count >= 0),
    failed_count     integer NOT NULL DEFAULT 0 CHECK (failed_count >= 0),
    declined_count   integer NOT NULL DEFAULT 0 CHECK (declined_count >= 0),
    cancelled_count  integer NOT NULL DEFAULT 0 CHECK (cancelled_count >= 0),
    duplicates       integer NOT NULL DEFAULT 0,
    dnc_skipped      integer NOT NULL DEFAULT 0,
    created_by       uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    last_claimed_at  timestamptz,  -- fairness: the least recently served batch goes first
    cancel_reason    text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (tenant_id, id),
    CONSTRAINT counters_sum_to_total CHECK (
        total = queued_count + running_count + dispatched_count
              + completed_count + failed_count + declined_count + cancelled_count),
    CONSTRAINT finished_only_when_terminal CHECK (
        finished_at IS NULL OR status IN ('completed', 'cancelled', 'failed'))
) WITH (fillfactor = 70);  -- counters change on every entry transition: leave room for HOT updates

CREATE INDEX batches_unfinished_by_tenant ON batchctl.batches (tenant_id) WHERE finished_at IS NULL;
CREATE INDEX batches_running ON batchctl.batches (tenant_id) WHERE status = 'running';
CREATE INDEX batches_by_tenant_created ON batchctl.batches (tenant_id, created_at DESC);

CREATE TABLE batchctl.batch_entries (
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    batch_id          uuid NOT NULL,
    tenant_id         uuid NOT NULL,
    entry_index       integer NOT NULL,
    to_phone          text NOT NULL CHECK (to_phone ~ '^\+[1-9][0-9]{6,14}$'),
    lead_id           text,
    lead_name         text,
    context           jsonb NOT NULL DEFAULT '{}',
    timezone          text,
    status            batchctl.entry_status NOT NULL DEFAULT 'queued',
    outcome           batchctl.call_status,
    attempts          integer NOT NULL DEFAULT 0,
    retry_count       integer NOT NULL DEFAULT 0,
    dispatch_failures integer NOT NULL DEFAULT 0,
    cancel_requested  boolean NOT NULL DEFAULT false,  -- cancel_entry on a live call: no retry after it
    next_attempt_at   timestamptz NOT NULL DEFAULT '-infinity',
    claimed_by        text,
    lease_expires_at  timestamptz,
    call_log_id       uuid,
    last_error        text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (tenant_id, id),
    UNIQUE (batch_id, to_phone),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE
) WITH (fillfactor = 80);

-- Partial indexes on the live statuses only: claim, sweep and cancel cost grows with the
-- non-terminal rows, never with history.
CREATE INDEX entries_claimable ON batchctl.batch_entries (batch_id, next_attempt_at, entry_index)
    WHERE status = 'queued';
CREATE INDEX entries_leased ON batchctl.batch_entries (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX entries_in_flight ON batchctl.batch_entries (batch_id)
    WHERE status IN ('running', 'dispatched');
-- add_dnc's look-up, and the claim's "this number is not already on a call" check.
CREATE INDEX entries_live_by_phone ON batchctl.batch_entries (tenant_id, to_phone)
    WHERE status IN ('queued', 'running', 'dispatched');

CREATE TABLE batchctl.call_logs (
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL,
    batch_id          uuid NOT NULL,
    entry_id          uuid NOT NULL,
    attempt           integer NOT NULL CHECK (attempt > 0),
    room_name         text NOT NULL,
    dispatch_id       text,
    status            batchctl.call_status NOT NULL DEFAULT 'in_queue',
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz NOT NULL DEFAULT now(),
    answered_at       timestamptz,
    ended_at          timestamptz,
    duration_seconds  numeric(10, 1),
    detail            jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id),
    UNIQUE (tenant_id, id),
    UNIQUE (entry_id, attempt),
    FOREIGN KEY (tenant_id, entry_id) REFERENCES batchctl.batch_entries (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, batch_id) REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX call_logs_live ON batchctl.call_logs (status, status_changed_at)
    WHERE status IN ('in_queue', 'ringing', 'ongoing');
CREATE INDEX call_logs_by_batch ON batchctl.call_logs (batch_id, entry_id);
CREATE INDEX call_logs_by_room ON batchctl.call_logs (room_name);

-- Append-only audit: a trigger in sql/ rejects UPDATE and DELETE.
CREATE TABLE batchctl.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    batch_id    uuid NOT NULL,
    object      text NOT NULL CHECK (object IN ('batch', 'entry', 'call')),
    object_id   uuid NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    reason      text,
    ignored     boolean NOT NULL DEFAULT false,  -- a late/duplicate report that changed nothing
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_by_batch ON batchctl.events (batch_id, object_id);

-- Report outbox: one row per finished batch, written in the transaction that finishes it.
CREATE TABLE batchctl.reports (
    batch_id         uuid NOT NULL,
    tenant_id        uuid NOT NULL,
    status           batchctl.report_status NOT NULL,
    recipients       text[] NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by       text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    PRIMARY KEY (batch_id),
    UNIQUE (tenant_id, batch_id),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX reports_due ON batchctl.reports (next_attempt_at) WHERE status = 'pending';
CREATE INDEX reports_sending ON batchctl.reports (lease_expires_at) WHERE status = 'sending';

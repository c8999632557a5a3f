-- Distribution keys: every primary key and unique constraint of the tenant-owned tables now
-- includes tenant_id, and every foreign key between them joins on it, so each of them can be
-- distributed by tenant_id (Citus enforces a unique key only inside one shard, and a foreign key
-- only between co-located shards). docs/scale-out.md has the layout; tests/sql/test_distribution.py
-- checks the rules.
--
-- tenants keeps its key (id): it is small, read by every claim, and meant to be a Citus
-- reference table (one copy on every node). dnc_numbers is keyed (tenant_id, phone) already.
--
-- tenant_id is appended to each key, not put first: functions look rows up by id alone
-- (mark_dispatched, report_call_status, report_sent, hangup_done, ...), and an index that leads
-- with id serves those look-ups and the (tenant_id, id) ones alike, so no table needs a second
-- index on id. batches, batch_entries, call_logs and reports each lose an index: the
-- UNIQUE (tenant_id, id) that the foreign keys referenced is now the primary key. A foreign key
-- depends on the index it references, so those foreign keys are dropped and re-created, with
-- their names and their ON DELETE CASCADE.
--
-- Ids stay random UUIDs (events: an identity), globally unique by construction; the database now
-- enforces that only per tenant, which is all a distributed database can check cheaply.

ALTER TABLE batchctl.batch_entries DROP CONSTRAINT batch_entries_tenant_id_batch_id_fkey;
ALTER TABLE batchctl.call_logs DROP CONSTRAINT call_logs_tenant_id_batch_id_fkey;
ALTER TABLE batchctl.call_logs DROP CONSTRAINT call_logs_tenant_id_entry_id_fkey;
ALTER TABLE batchctl.reports DROP CONSTRAINT reports_tenant_id_batch_id_fkey;
ALTER TABLE batchctl.hangups DROP CONSTRAINT hangups_tenant_id_call_log_id_fkey;

ALTER TABLE batchctl.batches
    DROP CONSTRAINT batches_pkey,
    DROP CONSTRAINT batches_tenant_id_id_key,
    ADD CONSTRAINT batches_pkey PRIMARY KEY (id, tenant_id);

-- The number is unique per batch (seed 001: a lead listed twice is one entry) and per tenant.
ALTER TABLE batchctl.batch_entries
    DROP CONSTRAINT batch_entries_pkey,
    DROP CONSTRAINT batch_entries_tenant_id_id_key,
    DROP CONSTRAINT batch_entries_batch_id_to_phone_key,
    ADD CONSTRAINT batch_entries_pkey PRIMARY KEY (id, tenant_id),
    ADD CONSTRAINT batch_entries_batch_id_to_phone_tenant_id_key UNIQUE (batch_id, to_phone, tenant_id);

ALTER TABLE batchctl.call_logs
    DROP CONSTRAINT call_logs_pkey,
    DROP CONSTRAINT call_logs_tenant_id_id_key,
    DROP CONSTRAINT call_logs_entry_id_attempt_key,
    ADD CONSTRAINT call_logs_pkey PRIMARY KEY (id, tenant_id),
    ADD CONSTRAINT call_logs_entry_id_attempt_tenant_id_key UNIQUE (entry_id, attempt, tenant_id);

-- Appended to by every transition: the identity leads, so inserts stay at the index's right edge.
ALTER TABLE batchctl.events
    DROP CONSTRAINT events_pkey,
    ADD CONSTRAINT events_pkey PRIMARY KEY (id, tenant_id);

ALTER TABLE batchctl.reports
    DROP CONSTRAINT reports_pkey,
    DROP CONSTRAINT reports_tenant_id_batch_id_key,
    ADD CONSTRAINT reports_pkey PRIMARY KEY (batch_id, tenant_id);

-- request_hangups' ON CONFLICT names this key (sql/055_hangups.sql).
ALTER TABLE batchctl.hangups
    DROP CONSTRAINT hangups_pkey,
    ADD CONSTRAINT hangups_pkey PRIMARY KEY (room_name, tenant_id);

ALTER TABLE batchctl.batch_entries
    ADD CONSTRAINT batch_entries_tenant_id_batch_id_fkey FOREIGN KEY (tenant_id, batch_id)
        REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE batchctl.call_logs
    ADD CONSTRAINT call_logs_tenant_id_entry_id_fkey FOREIGN KEY (tenant_id, entry_id)
        REFERENCES batchctl.batch_entries (tenant_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT call_logs_tenant_id_batch_id_fkey FOREIGN KEY (tenant_id, batch_id)
        REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE batchctl.reports
    ADD CONSTRAINT reports_tenant_id_batch_id_fkey FOREIGN KEY (tenant_id, batch_id)
        REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE batchctl.hangups
    ADD CONSTRAINT hangups_tenant_id_call_log_id_fkey FOREIGN KEY (tenant_id, call_log_id)
        REFERENCES batchctl.call_logs (tenant_id, id) ON DELETE CASCADE;

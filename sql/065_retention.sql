-- Retention: prune() deletes the batches that finished before p_now - p_older_than and whose
-- report is settled (sent, failed or skipped; never one still pending or being sent), with all
-- that is theirs: entries, call logs (their hang-up rows follow by cascade), events, webhook
-- deliveries and the report. A call deletes at most about p_limit rows and says whether more is left, so pg_cron can
-- call it every minute and `batchctl prune` in a loop, each call a short transaction.
--
-- Why rows in bounded batches and not monthly partitions of events: what expires is a batch's
-- whole history (events, call logs, entries, report), and batches finish at any time, so no
-- month boundary separates it from the rest: dropping a month of events would also take events
-- of batches still running or recent, whose rows would then lack the events that led to their
-- status. Partitions would also have to add the month to the primary key of events.
--
-- The invariants (tests/helpers/invariants.py) hold at every commit, also half-way through a big batch:
--   - an entry goes in one transaction with its call logs and the events of both, so whatever
--     is left still has the event trail that leads to its status;
--   - entries_counted (sql/032) takes the deleted entries out of their batch's counters and
--     total, so they keep equal to the entries that are left;
--   - the batch row goes last, with its report and its own events, once no entry is left, so a
--     finished batch keeps its one report row until it is gone.
-- Objects are deleted before their events: whoever adds an event holds a lock on its object
-- (the batch, the entry or the call log row), so an event added while prune waited for that
-- lock is seen by the later DELETE of events, never left behind.
--
-- Concurrency: prunes run one at a time (an advisory transaction lock: a second one waits for the
-- first call to commit, then carries on with what is left, so no row is counted twice). Batches
-- and their report rows are locked SKIP LOCKED: a prune never waits behind the daemon (a hang-up
-- being acknowledged, a report being re-sent right now); such a batch is left to the next call.
-- Below the batch nobody else locks an entry or a call log of a finished batch without holding
-- the batch first, except a late report's look at its call log, which waits for nothing: so call
-- logs can go before their entries (the foreign key's order) without a risk of deadlock.
--
-- The setting batchctl.pruning is on only while prune() runs (its SET clause; see pruning() in
-- sql/030). It guards against accidents, not people: no role but the owner may DELETE from the
-- tables, and prune() is granted to no role (sql/090).

CREATE OR REPLACE FUNCTION batchctl.prune(
    p_older_than interval, p_limit integer DEFAULT 10000, p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
SET batchctl.pruning = 'on'
AS $$
DECLARE
    v_cutoff timestamptz;
    v_batch_ids uuid[];  -- the batches this call holds, oldest first
    v_entry_ids uuid[];  -- their entries it deletes
    v_call_ids uuid[];
    v_done_ids uuid[];   -- the batches it deletes
    v_rows integer;
    v_batches integer := 0;
    v_reports integer := 0;
    v_entries integer := 0;
    v_calls integer := 0;
    v_events integer := 0;
BEGIN
    IF p_older_than IS NULL OR p_older_than <= interval '0' THEN
        RAISE EXCEPTION 'p_older_than: expected a positive interval, got %',
            coalesce(p_older_than::text, 'null') USING ERRCODE = 'BC001';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'p_limit: expected at least 1, got %', coalesce(p_limit::text, 'null')
            USING ERRCODE = 'BC001';
    END IF;
    IF p_now IS NULL THEN
        RAISE EXCEPTION 'p_now must not be null' USING ERRCODE = 'BC001';
    END IF;
    BEGIN
        v_cutoff := p_now - p_older_than;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'p_older_than: % before % is out of range', p_older_than, p_now
            USING ERRCODE = 'BC001';
    END;
    PERFORM pg_advisory_xact_lock(hashtext('batchctl.prune'));

    -- A batch costs at least one row per entry plus its own row, its report and its first
    -- event: lock only the oldest batches that can fit into this call.
    SELECT array_agg(id ORDER BY finished_at, id) INTO v_batch_ids
      FROM (SELECT b.id, b.finished_at
              FROM (SELECT x.id, x.tenant_id,
                           sum(x.total + 3) OVER (ORDER BY x.finished_at, x.id)
                               - (x.total + 3) AS before
                      FROM batches x
                     WHERE x.finished_at < v_cutoff
                       AND EXISTS (SELECT 1 FROM reports r
                                    WHERE r.batch_id = x.id AND r.tenant_id = x.tenant_id
                                      AND r.status IN ('sent', 'failed', 'skipped'))
                     ORDER BY x.finished_at, x.id
                     LIMIT p_limit) w
              JOIN batches b ON b.id = w.id AND b.tenant_id = w.tenant_id
              JOIN reports r ON r.batch_id = b.id AND r.tenant_id = b.tenant_id
             WHERE w.before < p_limit
               -- re-checked on the locked rows: a report re-sent meanwhile is no longer settled
               AND b.finished_at < v_cutoff AND r.status IN ('sent', 'failed', 'skipped')
               FOR UPDATE OF b, r SKIP LOCKED) locked;

    -- Entries in whole units (the entry, its call logs, the events of both), oldest batch first,
    -- while their running count of rows fits; at least one, so a limit smaller than an entry's
    -- rows still makes progress. Every locked batch but the last has fewer than p_limit entries,
    -- so at most 2 * p_limit candidates are costed.
    SELECT array_agg(u.id) INTO v_entry_ids
      FROM (SELECT k.id,
                   sum(k.cost) OVER (ORDER BY k.ord, k.id) AS upto,
                   row_number() OVER (ORDER BY k.ord, k.id) AS rn
              FROM (SELECT e.id, lb.ord,
                           1 + c.n + (SELECT count(*) FROM events ev
                                       WHERE ev.batch_id = lb.id
                                         AND ev.object_id = ANY (array_prepend(e.id, c.ids))
                           ) AS cost
                      FROM unnest(v_batch_ids) WITH ORDINALITY lb (id, ord)
                      CROSS JOIN LATERAL (SELECT e.id FROM batch_entries e
                                           WHERE e.batch_id = lb.id LIMIT p_limit) e
                      CROSS JOIN LATERAL (SELECT array_agg(c.id) AS ids, count(*) AS n
                                            FROM call_logs c
                                           WHERE c.batch_id = lb.id AND c.entry_id = e.id) c) k) u
     WHERE u.upto <= p_limit OR u.rn = 1;
    IF v_entry_ids IS NOT NULL THEN
        WITH gone AS (DELETE FROM call_logs WHERE entry_id = ANY (v_entry_ids) RETURNING id)
        SELECT coalesce(array_agg(id), '{}'), count(*) INTO v_call_ids, v_calls FROM gone;
        DELETE FROM batch_entries WHERE id = ANY (v_entry_ids);
        GET DIAGNOSTICS v_entries = ROW_COUNT;
        DELETE FROM events
         WHERE batch_id = ANY (v_batch_ids) AND object_id = ANY (v_entry_ids || v_call_ids);
        GET DIAGNOSTICS v_events = ROW_COUNT;
    END IF;

    -- Batches with no entry left, with their report and their own events, within the rows this
    -- call has left; the first one even over the limit when no entry went, again for progress.
    SELECT array_agg(u.id) INTO v_done_ids
      FROM (SELECT k.id,
                   sum(k.cost) OVER (ORDER BY k.ord) AS upto,
                   row_number() OVER (ORDER BY k.ord) AS rn
              FROM (SELECT lb.id, lb.ord,
                           2 + (SELECT count(*) FROM events ev WHERE ev.batch_id = lb.id) AS cost
                      FROM unnest(v_batch_ids) WITH ORDINALITY lb (id, ord)
                     WHERE NOT EXISTS (SELECT 1 FROM batch_entries e WHERE e.batch_id = lb.id)) k) u
     WHERE u.upto <= p_limit - (v_calls + v_entries + v_events)
        OR (u.rn = 1 AND v_entry_ids IS NULL);
    IF v_done_ids IS NOT NULL THEN
        DELETE FROM reports WHERE batch_id = ANY (v_done_ids);
        GET DIAGNOSTICS v_reports = ROW_COUNT;
        DELETE FROM batches WHERE id = ANY (v_done_ids);
        GET DIAGNOSTICS v_batches = ROW_COUNT;
        DELETE FROM events WHERE batch_id = ANY (v_done_ids);
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_events := v_events + v_rows;
        -- Its webhook deliveries (and their attempts, by cascade), sent or not: the events they
        -- carried are gone from the audit too (docs/webhooks.md).
        DELETE FROM webhook_deliveries WHERE batch_id = ANY (v_done_ids);
    END IF;

    RETURN jsonb_build_object(
        'batches', v_batches, 'reports', v_reports, 'entries', v_entries, 'call_logs', v_calls,
        'events', v_events,
        -- what is left includes batches skipped because someone held them
        'more', EXISTS (SELECT 1 FROM batches b
                          JOIN reports r ON r.batch_id = b.id AND r.tenant_id = b.tenant_id
                         WHERE b.finished_at < v_cutoff
                           AND r.status IN ('sent', 'failed', 'skipped')));
END
$$;

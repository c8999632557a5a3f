-- The daemon's and the voice worker's API: claim, dispatch outcome, call status reports.

-- Hands out entries to dial now, marked running with a lease. Caps: in flight (running +
-- dispatched) never exceeds the tenant's max_concurrent_calls nor the batch's wave_size; in
-- 'wave' mode a batch's next wave starts only when its current one is all terminal.
-- Concurrent claimers lock the tenants they serve (SKIP LOCKED), so two of them never fill the
-- same tenant's free slots; the counters they read are committed by the previous holder.
-- Fair: each batch contributes its next entries in order, and slots go round-robin (first entry
-- of every batch, then the second …), the least recently served batch first; tenants are taken
-- in random order.
-- dispatch_unconfirmed: a claim of this attempt came back unacknowledged before, so LiveKit may
-- already have its room (the daemon looks before it dispatches; for any other claim it need not).
CREATE OR REPLACE FUNCTION batchctl.claim_entries(
    p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 60)
RETURNS TABLE (entry_id uuid, batch_id uuid, tenant_id uuid, to_phone text, lead_name text,
               context jsonb, attempt integer, room_name text, options jsonb,
               dispatch_unconfirmed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    -- Tenants that look like they have both due work and a free slot (an unlocked read of the
    -- counters, re-checked below), in random order, each with how many entries it could take
    -- of its round-robin share of the claim.
    c_tenants CURSOR FOR
        SELECT t.id, least(w.takes, ceil(p_limit::numeric / w.tenants)) AS takes
          FROM (SELECT b.tenant_id, count(*) OVER () AS tenants,
                       least(tc.max_concurrent_calls - sum(b.running_count + b.dispatched_count),
                             sum(b.queued_count) FILTER (WHERE b.status = 'running')) AS takes
                  FROM batches b JOIN tenants tc ON tc.id = b.tenant_id
                 WHERE b.finished_at IS NULL
                 GROUP BY b.tenant_id, tc.max_concurrent_calls
                HAVING sum(b.queued_count) FILTER (WHERE b.status = 'running') > 0
                   AND sum(b.running_count + b.dispatched_count) < tc.max_concurrent_calls) w
          JOIN tenants t ON t.id = w.tenant_id
         ORDER BY random()
           FOR NO KEY UPDATE OF t SKIP LOCKED;
    v_tenant record;
    v_takes bigint := 0;
    v_tenant_ids uuid[] := '{}';
    v_entry_ids uuid[];
    v_batch_ids uuid[];
BEGIN
    IF p_worker IS NULL OR length(p_worker) = 0 THEN
        RAISE EXCEPTION 'p_worker: name the claiming worker (e.g. host:pid)' USING ERRCODE = 'BC001';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'p_limit: expected 1 to 10000, got %', p_limit USING ERRCODE = 'BC001';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'p_lease_seconds: expected at least 1, got %', p_lease_seconds USING ERRCODE = 'BC001';
    END IF;

    -- Lock tenants one at a time (a cursor fetch locks one row), skipping those another claimer
    -- holds, until the locked ones can take p_limit entries: concurrent claimers with small
    -- limits then serve different tenants side by side instead of one locking them all and the
    -- rest coming back empty.
    OPEN c_tenants;
    LOOP
        FETCH c_tenants INTO v_tenant;
        EXIT WHEN NOT FOUND;
        v_tenant_ids := v_tenant_ids || v_tenant.id;
        v_takes := v_takes + v_tenant.takes;
        EXIT WHEN v_takes >= p_limit;
    END LOOP;
    CLOSE c_tenants;
    IF v_takes = 0 THEN
        RETURN;
    END IF;

    -- A new statement, so a new snapshot: counters committed by the claimer that held a tenant
    -- lock before us are visible.
    WITH in_flight AS (
        SELECT b.tenant_id, sum(b.running_count + b.dispatched_count) AS n
          FROM batches b
         WHERE b.tenant_id = ANY (v_tenant_ids) AND b.finished_at IS NULL
         GROUP BY b.tenant_id
    ), tenant_free AS (
        SELECT t.id AS tenant_id, t.timezone, t.max_concurrent_calls - coalesce(i.n, 0) AS free
          FROM tenants t LEFT JOIN in_flight i ON i.tenant_id = t.id
         WHERE t.id = ANY (v_tenant_ids)
    ), batch_free AS (
        SELECT b.id, b.tenant_id, b.created_at, b.last_claimed_at, b.options, tf.timezone,
               tf.free AS tenant_free,
               CASE WHEN b.options ->> 'dispatch_mode' = 'wave' AND b.running_count + b.dispatched_count > 0
                    THEN 0
                    ELSE (b.options ->> 'wave_size')::integer - b.running_count - b.dispatched_count
               END AS free
          FROM batches b JOIN tenant_free tf ON tf.tenant_id = b.tenant_id
         WHERE b.status = 'running' AND b.queued_count > 0 AND tf.free > 0
           AND (b.options ->> 'start_at' IS NULL OR (b.options ->> 'start_at')::timestamptz <= now())
           AND (b.options ->> 'end_at' IS NULL OR (b.options ->> 'end_at')::timestamptz > now())
    ), candidates AS (
        SELECT c.id, c.to_phone, bf.id AS batch_id, bf.tenant_id, bf.tenant_free, bf.created_at,
               bf.last_claimed_at, c.rank_in_batch
          FROM batch_free bf
         CROSS JOIN LATERAL (
             SELECT e.id, e.to_phone, row_number() OVER (ORDER BY e.next_attempt_at, e.entry_index) AS rank_in_batch
               FROM batch_entries e
              -- (No tenant_id here: it would draw the planner to the batch's whole-history
              -- unique index instead of reading entries_claimable in order up to the LIMIT.)
              WHERE e.batch_id = bf.id AND e.status = 'queued' AND e.next_attempt_at <= now()
                AND (bf.options -> 'call_window' = 'null'
                     OR in_call_window(bf.options -> 'call_window', coalesce(e.timezone, bf.timezone), now()))
                -- Never two live calls to one number: it may sit in several of the tenant's batches,
                -- and a queued entry whose last claim may have dialled keeps it busy too.
                -- (The condition implies entries_busy_numbers' predicate: a probe of live rows.)
                AND NOT EXISTS (SELECT 1 FROM batch_entries busy
                                 WHERE busy.tenant_id = e.tenant_id AND busy.to_phone = e.to_phone
                                   AND (busy.status IN ('running', 'dispatched')
                                        OR (busy.status = 'queued' AND busy.dispatch_unconfirmed
                                            AND NOT e.dispatch_unconfirmed)))
              ORDER BY e.next_attempt_at, e.entry_index
              LIMIT greatest(0, least(bf.free, bf.tenant_free, p_limit))
         ) c
         WHERE bf.free > 0
    ), one_per_number AS (
        SELECT DISTINCT ON (c.tenant_id, c.to_phone) c.*
          FROM candidates c
         ORDER BY c.tenant_id, c.to_phone, c.rank_in_batch, c.created_at
    ), ranked AS (
        SELECT c.id, c.batch_id, c.tenant_free,
               row_number() OVER (PARTITION BY c.tenant_id
                                  ORDER BY c.rank_in_batch, c.last_claimed_at NULLS FIRST, c.created_at,
                                           c.batch_id) AS rank_in_tenant
          FROM one_per_number c
    ), chosen AS (
        SELECT r.id, r.batch_id FROM ranked r
         WHERE r.rank_in_tenant <= r.tenant_free
         ORDER BY r.rank_in_tenant, r.batch_id
         LIMIT p_limit
    )
    SELECT array_agg(c.id), array_agg(DISTINCT c.batch_id) INTO v_entry_ids, v_batch_ids FROM chosen c;
    IF v_entry_ids IS NULL THEN
        RETURN;
    END IF;

    PERFORM lock_batches(v_batch_ids);
    PERFORM set_reason('claim_entries: ' || p_worker);
    -- Re-checked under the batch locks: a pause or cancel that committed meanwhile wins.
    RETURN QUERY
    UPDATE batch_entries e
       SET status = 'running', claimed_by = p_worker,
           lease_expires_at = now() + make_interval(secs => p_lease_seconds), updated_at = now()
      FROM unnest(v_entry_ids) AS chosen (id)
      JOIN batches b ON b.id = ANY (v_batch_ids) AND b.status = 'running'
     WHERE e.id = chosen.id AND e.status = 'queued' AND e.batch_id = b.id AND e.tenant_id = b.tenant_id
    RETURNING e.id, e.batch_id, e.tenant_id, e.to_phone, e.lead_name, e.context, e.attempts + 1,
              batchctl.room_name(e.id, e.attempts + 1), b.options, e.dispatch_unconfirmed;
END
$$;

-- The claimed entry's call was accepted by LiveKit: its call log is created (in_queue) and the
-- attempt number advances. Idempotent for the same room. BC004 when the claim is gone (lease
-- expired and re-queued, or the entry was cancelled): the caller must hang the room up.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatched(
    p_entry_id uuid, p_room_name text, p_dispatch_id text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_entry batch_entries;
    v_call_id uuid;
BEGIN
    SELECT * INTO v_entry FROM batch_entries WHERE id = p_entry_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entry % not found', p_entry_id USING ERRCODE = 'BC002';
    END IF;
    -- From here on every statement names the entry's tenant (routable when distributed by it).
    PERFORM lock_tenant_batches(v_entry.tenant_id, ARRAY[v_entry.batch_id]);
    SELECT * INTO v_entry FROM batch_entries
     WHERE id = p_entry_id AND tenant_id = v_entry.tenant_id FOR UPDATE;
    IF NOT FOUND THEN  -- pruned (sql/065) while we waited for the lock
        RAISE EXCEPTION 'entry % not found', p_entry_id USING ERRCODE = 'BC002';
    END IF;

    IF v_entry.status = 'dispatched' THEN
        SELECT id INTO v_call_id FROM call_logs
         WHERE id = v_entry.call_log_id AND tenant_id = v_entry.tenant_id AND room_name = p_room_name;
        IF FOUND THEN
            RETURN v_call_id;  -- a repeated acknowledgement of the same dispatch
        END IF;
    END IF;
    IF v_entry.status <> 'running' THEN
        RAISE EXCEPTION 'entry % is % and no longer claimed; hang up room %', p_entry_id, v_entry.status, p_room_name
            USING ERRCODE = 'BC004';
    END IF;
    IF p_room_name IS DISTINCT FROM room_name(p_entry_id, v_entry.attempts + 1) THEN
        RAISE EXCEPTION 'p_room_name: % is not the claimed attempt''s room %', p_room_name,
            room_name(p_entry_id, v_entry.attempts + 1) USING ERRCODE = 'BC001';
    END IF;

    PERFORM set_reason('mark_dispatched');
    INSERT INTO call_logs (id, tenant_id, batch_id, entry_id, attempt, room_name, dispatch_id)
    VALUES (call_log_id(p_room_name), v_entry.tenant_id, v_entry.batch_id, p_entry_id, v_entry.attempts + 1,
            p_room_name, p_dispatch_id)
    RETURNING id INTO v_call_id;
    UPDATE batch_entries
       SET status = 'dispatched', attempts = attempts + 1, call_log_id = v_call_id,
           lease_expires_at = NULL, last_error = NULL, dispatch_unconfirmed = false, updated_at = now()
     WHERE id = p_entry_id AND tenant_id = v_entry.tenant_id;
    RETURN v_call_id;
END
$$;

-- Dispatching failed before any call existed. Retryable failures re-queue the entry with a
-- growing delay (5 s, 10 s, 20 s, 40 s), and the fifth failure of an entry fails it; the attempt
-- number does not advance. Returns the entry's status after; a late report for an entry no
-- longer running changes nothing.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatch_failed(
    p_entry_id uuid, p_error text, p_retryable boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_tenant_id uuid;
    v_batch_id uuid;
    v_status entry_status;
BEGIN
    SELECT tenant_id, batch_id INTO v_tenant_id, v_batch_id FROM batch_entries WHERE id = p_entry_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entry % not found', p_entry_id USING ERRCODE = 'BC002';
    END IF;
    PERFORM lock_tenant_batches(v_tenant_id, ARRAY[v_batch_id]);
    PERFORM set_reason('mark_dispatch_failed');
    UPDATE batch_entries
       SET status = CASE WHEN coalesce(p_retryable, true) AND dispatch_failures < 4 THEN 'queued'
                         ELSE 'failed' END::entry_status,
           dispatch_failures = dispatch_failures + 1,
           next_attempt_at = now() + make_interval(secs => 5 * 2 ^ dispatch_failures),
           last_error = coalesce(p_error, 'dispatch failed'),
           claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = p_entry_id AND tenant_id = v_tenant_id AND status = 'running'
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM batch_entries WHERE id = p_entry_id AND tenant_id = v_tenant_id;
    END IF;
    RETURN v_status;
END
$$;

-- The voice worker's call. Forward moves update the call; a terminal status moves the entry in
-- the same transaction (trigger). A duplicate, late or backward report changes nothing and is
-- recorded as an ignored event: workers and webhooks may deliver out of order and retry.
-- Returns the entry's status after.
CREATE OR REPLACE FUNCTION batchctl.report_call_status(
    p_call_log_id uuid, p_status text, p_detail jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_status call_status;
    v_call call_logs;
BEGIN
    IF p_status IS NULL OR NOT p_status = ANY (enum_range(NULL::call_status)::text[]) THEN
        RAISE EXCEPTION 'p_status: unknown call status %, allowed: %', coalesce(quote_literal(p_status), 'null'),
            array_to_string(enum_range(NULL::call_status)::text[], ', ') USING ERRCODE = 'BC001';
    END IF;
    v_status := p_status::call_status;
    p_detail := coalesce(p_detail, '{}');
    IF jsonb_typeof(p_detail) <> 'object' THEN
        RAISE EXCEPTION 'p_detail: expected a JSON object, got %', jsonb_typeof(p_detail) USING ERRCODE = 'BC001';
    END IF;
    IF p_detail ? 'duration_seconds' AND jsonb_typeof(p_detail -> 'duration_seconds') <> 'number' THEN
        RAISE EXCEPTION 'p_detail.duration_seconds: expected a number, got %', p_detail -> 'duration_seconds'
            USING ERRCODE = 'BC001';
    END IF;

    SELECT * INTO v_call FROM call_logs WHERE id = p_call_log_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'call log % not found', p_call_log_id USING ERRCODE = 'BC002';
    END IF;
    IF is_terminal(v_status) THEN
        -- its entry and counters will change
        PERFORM lock_tenant_batches(v_call.tenant_id, ARRAY[v_call.batch_id]);
    END IF;
    SELECT * INTO v_call FROM call_logs WHERE id = p_call_log_id AND tenant_id = v_call.tenant_id FOR UPDATE;
    IF NOT FOUND THEN  -- pruned (sql/065) while we waited for the lock
        RAISE EXCEPTION 'call log % not found', p_call_log_id USING ERRCODE = 'BC002';
    END IF;

    IF call_transition_allowed(v_call.status, v_status) THEN
        PERFORM set_reason('report_call_status');
        UPDATE call_logs SET status = v_status, detail = detail || p_detail
         WHERE id = p_call_log_id AND tenant_id = v_call.tenant_id;
    ELSE
        INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason, ignored)
        VALUES (v_call.tenant_id, v_call.batch_id, 'call', v_call.id, v_call.status, v_status,
                format('report_call_status: %s after %s ignored', v_status, v_call.status), true);
    END IF;
    RETURN (SELECT status FROM batch_entries WHERE id = v_call.entry_id AND tenant_id = v_call.tenant_id);
END
$$;

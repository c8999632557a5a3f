-- The daemon's and the voice worker's API: claim, dispatch outcome, call status reports.

-- Hands out entries to dial now, marked running with a lease. Caps: in flight (running +
-- dispatched) never exceeds the tenant's max_concurrent_calls nor the batch's wave_size; in
-- 'wave' mode a batch's next wave starts only when its current one is all terminal.
-- Concurrent claimers lock the tenants they serve (SKIP LOCKED), so two of them never fill the
-- same tenant's free slots; the counters they read are committed by the previous holder.
-- Fair: each batch contributes its next entries in order, and slots go round-robin (first entry
-- of every batch, then the second …), the least recently served batch first. Tenants are taken
-- in random order, as few as fill the claim: across claims every tenant with work comes first as
-- often as any other, and its max_concurrent_calls bounds what one claim can give it.
-- dispatch_unconfirmed: a claim of this attempt came back unacknowledged before, so LiveKit may
-- already have its room (the daemon looks before it dispatches; for any other claim it need not).
-- Such an entry keeps its call slot for a while (sql/032): it is claimed without a free one.
CREATE OR REPLACE FUNCTION batchctl.claim_entries(
    p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 60)
RETURNS TABLE (entry_id uuid, batch_id uuid, tenant_id uuid, to_phone text, lead_name text,
               context jsonb, attempt integer, room_name text, options jsonb,
               dispatch_unconfirmed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    -- Tenants that look like they have work and a free slot (an unlocked read of the counters,
    -- re-checked below), in random order.
    c_tenants CURSOR FOR
        SELECT t.id
          FROM (SELECT b.tenant_id
                  FROM batches b JOIN tenants tc ON tc.id = b.tenant_id
                 WHERE b.finished_at IS NULL
                 GROUP BY b.tenant_id, tc.max_concurrent_calls
                HAVING sum(b.queued_count) FILTER (WHERE b.status = 'running') > 0
                   AND sum(b.running_count + b.dispatched_count) < tc.max_concurrent_calls) w
          JOIN tenants t ON t.id = w.tenant_id
         ORDER BY random()
           FOR NO KEY UPDATE OF t SKIP LOCKED;
    v_tenant_id uuid;
    v_want integer;
    v_entry_ids uuid[] := '{}';
    v_batch_ids uuid[] := '{}';
BEGIN
    IF p_worker IS NULL OR length(p_worker) = 0 OR text_problem(p_worker) IS NOT NULL THEN
        RAISE EXCEPTION 'p_worker: name the claiming worker (e.g. host:pid)%',
            coalesce('; it ' || text_problem(p_worker), '') USING ERRCODE = 'BC001';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'p_limit: expected 1 to 10000, got %', p_limit USING ERRCODE = 'BC001';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'p_lease_seconds: expected at least 1, got %', p_lease_seconds USING ERRCODE = 'BC001';
    END IF;

    -- Lock tenants one at a time (a cursor fetch locks one row), skipping those another claimer
    -- holds, and take each one's entries until the claim is full: concurrent claimers serve
    -- different tenants side by side instead of one locking them all and the rest coming back
    -- empty, and a claim reads the candidates of the few tenants it needs. Each statement below
    -- names one tenant (routable when distributed by it).
    OPEN c_tenants;
    LOOP
        FETCH c_tenants INTO v_tenant_id;
        EXIT WHEN NOT FOUND;
        v_want := p_limit - cardinality(v_entry_ids);
        -- A new statement, so a new snapshot: counters committed by the claimer that held this
        -- tenant's lock before us are visible.
        WITH held AS (
            -- Queued entries whose dispatch may be live at LiveKit keep their call slot (sql/032):
            -- they count as in flight, and a claim of them (to settle the dispatch) needs no free
            -- slot. Few rows: read through entries_busy_numbers.
            SELECT h.id, h.batch_id, h.to_phone, h.timezone, h.next_attempt_at
              FROM batch_entries h
             WHERE h.tenant_id = v_tenant_id AND h.status = 'queued' AND h.dispatch_unconfirmed
               AND h.slot_held_until > now()
        ), tenant_free AS (
            SELECT t.timezone,
                   t.max_concurrent_calls - (SELECT count(*) FROM held) - coalesce((
                       SELECT sum(b.running_count + b.dispatched_count) FROM batches b
                        WHERE b.tenant_id = v_tenant_id AND b.finished_at IS NULL), 0) AS free
              FROM tenants t
             WHERE t.id = v_tenant_id
        ), batch_free AS (
            SELECT b.id, b.created_at, b.last_claimed_at, b.options, tf.timezone,
                   tf.free AS tenant_free,
                   CASE WHEN b.options ->> 'dispatch_mode' = 'wave' AND f.in_flight > 0 THEN 0
                        ELSE (b.options ->> 'wave_size')::integer - f.in_flight
                   END AS free
              FROM batches b CROSS JOIN tenant_free tf
             CROSS JOIN LATERAL (
                 SELECT b.running_count + b.dispatched_count
                        + (SELECT count(*) FROM held h WHERE h.batch_id = b.id) AS in_flight
             ) f
             WHERE b.tenant_id = v_tenant_id
               AND b.status = 'running' AND b.queued_count > 0
               AND (b.options ->> 'start_at' IS NULL OR (b.options ->> 'start_at')::timestamptz <= now())
               AND (b.options ->> 'end_at' IS NULL OR (b.options ->> 'end_at')::timestamptz > now())
        ), candidates AS (
            SELECT c.id, c.to_phone, bf.id AS batch_id, bf.tenant_free, bf.created_at,
                   bf.last_claimed_at, c.rank_in_batch, false AS holds_slot
              FROM batch_free bf
             CROSS JOIN LATERAL (
                 SELECT e.id, e.to_phone, row_number() OVER (ORDER BY e.next_attempt_at, e.entry_index) AS rank_in_batch
                   FROM batch_entries e
                  -- (No tenant_id here: it would draw the planner to the batch's whole-history
                  -- unique index instead of reading entries_claimable in order up to the LIMIT.)
                  WHERE e.batch_id = bf.id AND e.status = 'queued' AND e.next_attempt_at <= now()
                    AND NOT (e.dispatch_unconfirmed AND e.slot_held_until > now())  -- held: below
                    AND (bf.options -> 'call_window' = 'null'
                         OR in_call_window(bf.options -> 'call_window', coalesce(e.timezone, bf.timezone), now()))
                    -- Never two live calls to one number: it may sit in several of the tenant's
                    -- batches, and a queued entry whose last claim may have dialled keeps it busy
                    -- too. (The condition implies entries_busy_numbers' predicate: a probe of
                    -- live rows.)
                    AND NOT EXISTS (SELECT 1 FROM batch_entries busy
                                     WHERE busy.tenant_id = e.tenant_id AND busy.to_phone = e.to_phone
                                       AND (busy.status IN ('running', 'dispatched')
                                            OR (busy.status = 'queued' AND busy.dispatch_unconfirmed
                                                AND NOT e.dispatch_unconfirmed)))
                  ORDER BY e.next_attempt_at, e.entry_index
                  LIMIT greatest(0, least(bf.free, bf.tenant_free, v_want))
             ) c
             WHERE bf.free > 0 AND bf.tenant_free > 0
            UNION ALL
            SELECT h.id, h.to_phone, bf.id, bf.tenant_free, bf.created_at, bf.last_claimed_at,
                   0, true
              FROM held h JOIN batch_free bf ON bf.id = h.batch_id
             WHERE h.next_attempt_at <= now()
               AND (bf.options -> 'call_window' = 'null'
                    OR in_call_window(bf.options -> 'call_window', coalesce(h.timezone, bf.timezone), now()))
        ), one_per_number AS (
            SELECT DISTINCT ON (c.to_phone) c.*
              FROM candidates c
             ORDER BY c.to_phone, c.rank_in_batch, c.created_at
        ), ranked AS (
            SELECT c.id, c.batch_id, c.tenant_free, c.holds_slot,
                   row_number() OVER (PARTITION BY c.holds_slot
                                      ORDER BY c.rank_in_batch, c.last_claimed_at NULLS FIRST, c.created_at,
                                               c.batch_id) AS rank_in_tenant
              FROM one_per_number c
        ), chosen AS (
            SELECT r.id, r.batch_id FROM ranked r
             WHERE r.holds_slot OR r.rank_in_tenant <= r.tenant_free
             ORDER BY r.holds_slot DESC, r.rank_in_tenant
             LIMIT v_want
        )
        SELECT v_entry_ids || coalesce(array_agg(c.id), '{}'),
               v_batch_ids || coalesce(array_agg(DISTINCT c.batch_id), '{}')
          INTO v_entry_ids, v_batch_ids
          FROM chosen c;
        EXIT WHEN cardinality(v_entry_ids) >= p_limit;
    END LOOP;
    CLOSE c_tenants;
    IF cardinality(v_entry_ids) = 0 THEN
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

-- Claimed entries' calls were accepted by LiveKit, acknowledged together (the daemon's
-- completer flushes what its dispatches finished meanwhile): one transaction, one counter update
-- per batch, one event insert for all. For each input, in input order: the call log id (created
-- in_queue, the attempt advanced; the same id again for a repeated acknowledgement of the same
-- room), the entry's status after, and what was wrong with the acknowledgement. A null
-- call_log_id means the claim is gone (lease expired and re-queued, or the entry was
-- cancelled): the caller must hang that room up; a null status too means there is no such
-- entry. A room that is not the claimed attempt's is not acknowledged (error says so, as
-- mark_dispatched's BC001 would); the others are, whatever one of them is wrong.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatched_many(
    p_entry_ids uuid[], p_room_names text[], p_dispatch_ids text[] DEFAULT NULL)
RETURNS TABLE (entry_id uuid, call_log_id uuid, status text, error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_parallel_arrays('p_room_names, p_dispatch_ids', 'entry id', cardinality(p_entry_ids),
                                  cardinality(p_room_names), cardinality(p_dispatch_ids));
    -- Every change of an entry locks its batch first (sql/020): under these locks the entries
    -- read below cannot change before they are updated.
    PERFORM lock_batches(ARRAY(SELECT DISTINCT e.batch_id FROM batch_entries e WHERE e.id = ANY (p_entry_ids)));

    PERFORM set_reason('mark_dispatched');
    WITH claimed AS (
        SELECT DISTINCT ON (e.id) e.id, e.tenant_id, e.batch_id, e.attempts, i.room_name, i.dispatch_id
          FROM unnest(p_entry_ids, p_room_names, p_dispatch_ids) AS i (entry_id, room_name, dispatch_id)
          JOIN batch_entries e ON e.id = i.entry_id
         WHERE e.status = 'running' AND i.room_name = room_name(e.id, e.attempts + 1)
         ORDER BY e.id
    ), logged AS (
        INSERT INTO call_logs (id, tenant_id, batch_id, entry_id, attempt, room_name, dispatch_id)
        SELECT batchctl.call_log_id(c.room_name), c.tenant_id, c.batch_id, c.id, c.attempts + 1,
               c.room_name, c.dispatch_id
          FROM claimed c
        RETURNING call_logs.id, call_logs.tenant_id, call_logs.entry_id
    )
    UPDATE batch_entries e
       SET status = 'dispatched', attempts = e.attempts + 1, call_log_id = l.id,
           lease_expires_at = NULL, last_error = NULL, dispatch_unconfirmed = false,
           slot_held_until = NULL, updated_at = now()
      FROM logged l
     WHERE e.id = l.entry_id AND e.tenant_id = l.tenant_id;

    RETURN QUERY
    SELECT i.entry_id, c.id, e.status::text,
           CASE WHEN e.status = 'running' THEN
               format('room %s is not the claimed attempt''s room %s', coalesce(i.room_name, 'null'),
                      room_name(e.id, e.attempts + 1))
           END
      FROM unnest(p_entry_ids, p_room_names) WITH ORDINALITY AS i (entry_id, room_name, ord)
      LEFT JOIN batch_entries e ON e.id = i.entry_id
      LEFT JOIN call_logs c ON e.status = 'dispatched' AND c.id = e.call_log_id
                           AND c.tenant_id = e.tenant_id AND c.room_name = i.room_name
     ORDER BY i.ord;
END
$$;

-- The claimed entry's call was accepted by LiveKit: its call log is created (in_queue) and the
-- attempt number advances. Idempotent for the same room. BC004 when the claim is gone (lease
-- expired and re-queued, or the entry was cancelled): the caller must hang the room up.
-- mark_dispatched_many answers the same for many; this one-entry form keeps its own short body
-- (a wrapper over the set form measured 50% slower per call). What the acknowledgement means —
-- guard, counters, events — is the triggers' in both.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatched(
    p_entry_id uuid, p_room_name text, p_dispatch_id text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
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
           lease_expires_at = NULL, last_error = NULL, dispatch_unconfirmed = false,
           slot_held_until = NULL, updated_at = now()
     WHERE id = p_entry_id AND tenant_id = v_entry.tenant_id;
    RETURN v_call_id;
END
$$;

-- A failed dispatch is tried again after 5, 10, 20, 40 s ...; its fifth failure ends it.
-- (SQL-standard bodies, inlined like the rules in sql/010.)
CREATE OR REPLACE FUNCTION batchctl.dispatch_retry_delay(p_failures_before integer)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => 5 * 2 ^ p_failures_before);

CREATE OR REPLACE FUNCTION batchctl.dispatch_failures_allowed()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 5;

-- The claim of p_entry_id ends without a call: mark_dispatch_failed and mark_dispatch_unknown.
CREATE OR REPLACE FUNCTION batchctl.end_dispatch_attempt(
    p_entry_id uuid, p_error text, p_retryable boolean, p_unconfirmed boolean)
RETURNS text LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
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
    PERFORM set_reason(CASE WHEN p_unconfirmed THEN 'mark_dispatch_unknown' ELSE 'mark_dispatch_failed' END);
    UPDATE batch_entries
       SET status = CASE WHEN p_retryable
                              AND (dispatch_failures + 1 < dispatch_failures_allowed()
                                   OR (p_unconfirmed AND slot_held_until > now()))
                         THEN 'queued' ELSE 'failed' END::entry_status,
           dispatch_failures = dispatch_failures + 1,
           dispatch_unconfirmed = p_unconfirmed,
           next_attempt_at = now() + dispatch_retry_delay(dispatch_failures),
           last_error = left(p_error, max_text_length()),
           claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE id = p_entry_id AND tenant_id = v_tenant_id AND status = 'running'
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM batch_entries WHERE id = p_entry_id AND tenant_id = v_tenant_id;
    END IF;
    RETURN v_status;
END
$$;

-- LiveKit refused the dispatch (it answered): no dispatch of this attempt exists, so the entry
-- gives its call slot back. Retryable refusals re-queue the entry after dispatch_retry_delay,
-- and its fifth failure, or a refusal no retry can help, fails it; the attempt number does not
-- advance. A claim whose earlier dispatch was unconfirmed reaches this only after the daemon
-- looked and found no room, so the dispatch is confirmed absent. Returns the entry's status
-- after; a late report for an entry no longer running changes nothing.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatch_failed(
    p_entry_id uuid, p_error text, p_retryable boolean DEFAULT true)
RETURNS text LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT batchctl.end_dispatch_attempt(p_entry_id, coalesce(p_error, 'dispatch failed'),
                                           coalesce(p_retryable, true), false) $$;

-- The dispatch's outcome is unknown: CreateDispatch was sent and no answer came back (a
-- timeout, a dropped connection, a reply that cannot be read), or looking for an earlier
-- unconfirmed dispatch failed. LiveKit may have the call, so the entry goes back to the queue
-- unconfirmed: its number stays busy and it keeps its call slot (sql/032) until a claim of it
-- finds the room (adopts it) or finds none (dispatches again), or until its pickup timeout has
-- passed. Counted as a dispatch failure, with the same delays; it ends the entry only once the
-- slot is no longer held.
CREATE OR REPLACE FUNCTION batchctl.mark_dispatch_unknown(p_entry_id uuid, p_error text)
RETURNS text LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT batchctl.end_dispatch_attempt(p_entry_id, coalesce(p_error, 'dispatch outcome unknown'),
                                           true, true) $$;

-- What is wrong with one status report, or null: "status: …", "detail: …" or
-- "detail.duration_seconds: …" (callers say which report it was). On every report's path, so
-- like the rules in sql/010 a SQL-standard body without SET, which PostgreSQL inlines (STABLE,
-- as enum_range is: an IMMUTABLE function calling it would not be inlined).
CREATE OR REPLACE FUNCTION batchctl.call_report_problem(p_status text, p_detail jsonb)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN p_status IS NULL OR NOT p_status = ANY (pg_catalog.enum_range(NULL::batchctl.call_status)::text[])
        THEN pg_catalog.format('status: unknown call status %s, allowed: %s',
                               coalesce(pg_catalog.quote_literal(p_status), 'null'),
                               pg_catalog.array_to_string(pg_catalog.enum_range(NULL::batchctl.call_status)::text[], ', '))
    WHEN pg_catalog.jsonb_typeof(coalesce(p_detail, '{}')) <> 'object'
        THEN pg_catalog.format('detail: expected a JSON object, got %s', pg_catalog.jsonb_typeof(p_detail))
    WHEN batchctl.json_problem(p_detail, batchctl.max_detail_bytes()) IS NOT NULL
        THEN 'detail: ' || batchctl.json_problem(p_detail, batchctl.max_detail_bytes())
    WHEN p_detail ? 'duration_seconds'
         AND (pg_catalog.jsonb_typeof(p_detail -> 'duration_seconds') <> 'number'
              OR (p_detail ->> 'duration_seconds')::numeric NOT BETWEEN 0 AND batchctl.max_call_seconds())
        THEN pg_catalog.format('detail.duration_seconds: expected a number of seconds from 0 to %s, got %s',
                               batchctl.max_call_seconds(), p_detail -> 'duration_seconds')
END;

-- Many voice-worker reports in one transaction (a completer flushing what arrived meanwhile:
-- the webhook receiver's, or a worker fleet's). Each report means what report_call_status says.
-- Reports of one call apply in input order, reports of different calls side by side: a round
-- takes each call's next report (usually one round does all). Returns, per input in order, the
-- call log id, its entry's status after, and why the report was not applied: what is wrong
-- with it (as report_call_status's BC001 would say), or 'call log not found' (status null).
-- A bad report never costs the others theirs: each valid one is applied.
CREATE OR REPLACE FUNCTION batchctl.report_call_statuses(
    p_call_log_ids uuid[], p_statuses text[], p_details jsonb[] DEFAULT NULL)
RETURNS TABLE (call_log_id uuid, status text, error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_problems text[];  -- per report, what is wrong with it, or null
    v_rounds integer;
BEGIN
    PERFORM check_parallel_arrays('p_statuses, p_details', 'call log id', cardinality(p_call_log_ids),
                                  cardinality(p_statuses), cardinality(p_details));
    SELECT array_agg(call_report_problem(r.status, r.detail) ORDER BY r.ord) INTO v_problems
      FROM unnest(p_statuses, p_details) WITH ORDINALITY AS r (status, detail, ord);
    -- How many rounds: the most valid reports of one call.
    SELECT max(r.nth) INTO v_rounds
      FROM (SELECT row_number() OVER (PARTITION BY r.id ORDER BY r.ord) AS nth
              FROM unnest(p_call_log_ids) WITH ORDINALITY AS r (id, ord)
             WHERE v_problems[r.ord] IS NULL) r;

    -- A final report moves its entry and the batch's counters: lock those batches first.
    -- (The CASEs keep a malformed status from ever being cast.)
    PERFORM lock_batches(ARRAY(
        SELECT DISTINCT c.batch_id
          FROM unnest(p_call_log_ids, p_statuses) WITH ORDINALITY AS r (id, status, ord)
          JOIN call_logs c ON c.id = r.id
         WHERE CASE WHEN v_problems[r.ord] IS NULL THEN is_terminal(r.status::call_status) END));
    PERFORM FROM call_logs c WHERE c.id = ANY (p_call_log_ids) ORDER BY c.id FOR UPDATE;

    PERFORM set_reason('report_call_status');
    FOR v_round IN 1 .. coalesce(v_rounds, 0) LOOP
        -- Forward moves update the call (its trigger moves the entry on a final one); a
        -- duplicate, late or backward report changes nothing and is recorded as ignored.
        WITH this_round AS (
            SELECT c.id, c.tenant_id, c.batch_id, c.status AS from_status, r.status, r.detail,
                   call_transition_allowed(c.status, r.status) AS allowed
              FROM (SELECT r.id, coalesce(r.detail, '{}') AS detail,
                           CASE WHEN v_problems[r.ord] IS NULL THEN r.status::call_status END AS status,
                           row_number() OVER (PARTITION BY r.id ORDER BY r.ord) AS nth
                      FROM unnest(p_call_log_ids, p_statuses, p_details) WITH ORDINALITY AS r (id, status, detail, ord)
                     WHERE v_problems[r.ord] IS NULL
                   ) r
              JOIN call_logs c ON c.id = r.id
             WHERE r.nth = v_round
        ), ignored AS (
            INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason, ignored)
            SELECT t.tenant_id, t.batch_id, 'call', t.id, t.from_status, t.status,
                   format('report_call_status: %s after %s ignored', t.status, t.from_status), true
              FROM this_round t
             WHERE NOT t.allowed
        )
        UPDATE call_logs c
           SET status = t.status, detail = c.detail || t.detail
          FROM this_round t
         WHERE c.id = t.id AND c.tenant_id = t.tenant_id AND t.allowed;
    END LOOP;

    RETURN QUERY
    SELECT r.id, e.status::text,
           coalesce(v_problems[r.ord], CASE WHEN c.id IS NULL THEN 'call log not found' END)
      FROM unnest(p_call_log_ids) WITH ORDINALITY AS r (id, ord)
      LEFT JOIN call_logs c ON c.id = r.id
      LEFT JOIN batch_entries e ON e.id = c.entry_id AND e.tenant_id = c.tenant_id
     ORDER BY r.ord;
END
$$;

-- The voice worker's call. Forward moves update the call; a terminal status moves the entry in
-- the same transaction (trigger). A duplicate, late or backward report changes nothing and is
-- recorded as an ignored event: workers and webhooks may deliver out of order and retry.
-- Returns the entry's status after. report_call_statuses does the same for many; like
-- mark_dispatched, this one-report form is the voice workers' hot path and keeps its own short
-- body (a wrapper measured 60–90% slower per call).
CREATE OR REPLACE FUNCTION batchctl.report_call_status(
    p_call_log_id uuid, p_status text, p_detail jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_problem text := call_report_problem(p_status, p_detail);
    v_status call_status;
    v_call call_logs;
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_%', v_problem USING ERRCODE = 'BC001';
    END IF;
    v_status := p_status::call_status;
    p_detail := coalesce(p_detail, '{}');

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

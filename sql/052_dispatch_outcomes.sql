-- What became of a claim's dispatch: LiveKit accepted it (mark_dispatched, and
-- mark_dispatched_many for many), refused it (mark_dispatch_failed), or its outcome is unknown
-- (mark_dispatch_unknown).

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
        SELECT DISTINCT ON (e.id) e.id, e.tenant_id, e.batch_id, e.to_phone, e.attempts, i.room_name,
               i.dispatch_id, e.trunk_id, e.caller_id
          FROM unnest(p_entry_ids, p_room_names, p_dispatch_ids) AS i (entry_id, room_name, dispatch_id)
          JOIN batch_entries e ON e.id = i.entry_id
         WHERE e.status = 'running' AND i.room_name = room_name(e.id, e.attempts + 1)
         ORDER BY e.id
    ), logged AS (
        -- (Started by the claim's clock, which frequency caps count by: sql/029.)
        INSERT INTO call_logs (id, tenant_id, batch_id, entry_id, to_phone, attempt, room_name,
                               dispatch_id, started_at, status_changed_at, trunk_id, caller_id)
        SELECT batchctl.call_log_id(c.room_name), c.tenant_id, c.batch_id, c.id, c.to_phone,
               c.attempts + 1, c.room_name, c.dispatch_id, clock(), clock(), c.trunk_id, c.caller_id
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
    -- (Started by the claim's clock, which frequency caps count by: sql/029.)
    INSERT INTO call_logs (id, tenant_id, batch_id, entry_id, to_phone, attempt, room_name,
                           dispatch_id, started_at, status_changed_at, trunk_id, caller_id)
    VALUES (call_log_id(p_room_name), v_entry.tenant_id, v_entry.batch_id, p_entry_id,
            v_entry.to_phone, v_entry.attempts + 1, p_room_name, p_dispatch_id, clock(), clock(),
            v_entry.trunk_id, v_entry.caller_id)
    RETURNING id INTO v_call_id;
    UPDATE batch_entries
       SET status = 'dispatched', attempts = attempts + 1, call_log_id = v_call_id,
           lease_expires_at = NULL, last_error = NULL, dispatch_unconfirmed = false,
           slot_held_until = NULL, updated_at = now()
     WHERE id = p_entry_id AND tenant_id = v_entry.tenant_id;
    RETURN v_call_id;
END
$$;

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

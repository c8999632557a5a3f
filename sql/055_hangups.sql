-- The hang-up outbox (table in migrations/0003): every LiveKit room batchctl wants deleted.
-- A request is written in the transaction that decides it (cancel, sweep timeout) and announced
-- on batchctl_hangup (payload: the room name); the NOTIFY only wakes the daemon, the row is what
-- it works from, so a hang-up survives a daemon that is down or a lost notification.

-- Queues the hang-up of the given calls' rooms (once per room) and wakes the daemon.
CREATE OR REPLACE FUNCTION batchctl.request_hangups(p_call_ids uuid[], p_reason text)
RETURNS integer LANGUAGE sql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    WITH requested AS (
        INSERT INTO batchctl.hangups (room_name, tenant_id, batch_id, call_log_id, reason)
        SELECT c.room_name, c.tenant_id, c.batch_id, c.id, p_reason
          FROM batchctl.call_logs c WHERE c.id = ANY (p_call_ids)
        ON CONFLICT (room_name, tenant_id) DO NOTHING
        RETURNING room_name
    ), announced AS (
        SELECT pg_notify('batchctl_hangup', room_name) FROM requested
    )
    SELECT count(*)::integer FROM announced
$$;

-- Queues the hang-up of the rooms of these entries' claimed attempts, which have no call log:
-- claims that may have dialled and ended without one (sql/032's entries_after_update).
CREATE OR REPLACE FUNCTION batchctl.request_room_hangups(p_entry_ids uuid[])
RETURNS integer LANGUAGE sql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    WITH requested AS (
        INSERT INTO batchctl.hangups (room_name, tenant_id, batch_id, call_log_id, reason)
        SELECT batchctl.room_name(e.id, e.attempts + 1), e.tenant_id, e.batch_id, NULL,
               coalesce(e.last_error, e.status::text)
          FROM batchctl.batch_entries e WHERE e.id = ANY (p_entry_ids)
        ON CONFLICT (room_name, tenant_id) DO NOTHING
        RETURNING room_name
    ), announced AS (
        SELECT pg_notify('batchctl_hangup', room_name) FROM requested
    )
    SELECT count(*)::integer FROM announced
$$;

-- Hands out up to p_limit due hang-ups. Claimed rows become invisible for 30 s (a visibility
-- timeout, as in pgmq): a daemon that dies mid-way leaves them to be claimed again, and
-- deleting a room twice is harmless.
CREATE OR REPLACE FUNCTION batchctl.claim_hangups(p_worker text, p_limit integer DEFAULT 20)
RETURNS TABLE (room_name text, call_log_id uuid, reason text, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit: expected 1 to 1000, got %', p_limit USING ERRCODE = 'BC001';
    END IF;
    RETURN QUERY
    UPDATE hangups h
       SET attempts = h.attempts + 1, next_attempt_at = now() + hangup_visibility_timeout()
      FROM (SELECT d.room_name, d.tenant_id FROM hangups d
             WHERE d.done_at IS NULL AND d.next_attempt_at <= now()
             ORDER BY d.next_attempt_at
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED) due
     WHERE h.room_name = due.room_name AND h.tenant_id = due.tenant_id
    RETURNING h.room_name, h.call_log_id, h.reason, h.attempts;
END
$$;

-- The room is gone (deleted, or LiveKit no longer knew it). A call still live in our records
-- ends 'cancelled' now, so a batch does not wait for a timeout to hear from a hung-up agent.
CREATE OR REPLACE FUNCTION batchctl.hangup_done(p_room_name text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant_id uuid;
    v_batch_id uuid;
    v_call_log_id uuid;
    v_reason text;
BEGIN
    -- The batch first, as every function does (020's lock order): cancel_batch holds the batch
    -- while it queues hang-ups, and a done-marker holding this row first could deadlock with it.
    SELECT tenant_id, batch_id INTO v_tenant_id, v_batch_id FROM hangups WHERE room_name = p_room_name;
    PERFORM lock_tenant_batches(v_tenant_id, ARRAY[v_batch_id]);
    UPDATE hangups SET done_at = now(), last_error = NULL
     WHERE room_name = p_room_name AND tenant_id = v_tenant_id AND done_at IS NULL
    RETURNING call_log_id, reason INTO v_call_log_id, v_reason;
    IF NOT FOUND THEN
        RETURN;  -- already done (another daemon, or a repeated acknowledgement), or unknown
    END IF;
    IF EXISTS (SELECT 1 FROM call_logs
                WHERE id = v_call_log_id AND tenant_id = v_tenant_id AND NOT is_terminal(status)) THEN
        PERFORM report_call_status(v_call_log_id, 'cancelled',
                                   jsonb_build_object('error', 'hung up: ' || v_reason));
    END IF;
END
$$;

-- Deleting the room failed: retried after 2, 4, 8 … seconds, at most 5 minutes apart.
CREATE OR REPLACE FUNCTION batchctl.hangup_failed(p_room_name text, p_error text)
RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    UPDATE batchctl.hangups
       SET last_error = coalesce(left(p_error, batchctl.max_text_length()), 'hang-up failed'),
           next_attempt_at = now() + batchctl.hangup_retry_delay(attempts)
     WHERE room_name = p_room_name AND done_at IS NULL
$$;

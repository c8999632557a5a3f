-- sweep(): the timeouts, for cron / pg_cron / the daemon's timer. Idempotent; one sweep at a
-- time (a second concurrent call returns {"skipped": true} at once). Every step reads the
-- partial indexes of live rows only, so its cost follows the in-flight work, not the history.
-- p_now lets tests and operators sweep "as of" a later moment.
CREATE OR REPLACE FUNCTION batchctl.sweep(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_result jsonb := '{}';
    v_batch_ids uuid[];
    v_call_ids uuid[];
    v_count integer;
    v_requeued integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('batchctl.sweep')) THEN
        RETURN jsonb_build_object('skipped', true);
    END IF;

    -- 1. Claims whose lease ran out (the daemon died or stalled): back to the queue, same attempt.
    SELECT array_agg(DISTINCT e.batch_id) INTO v_batch_ids
      FROM batch_entries e WHERE e.status = 'running' AND e.lease_expires_at < p_now;
    PERFORM lock_batches(v_batch_ids);
    PERFORM set_reason('sweep');
    UPDATE batch_entries
       SET status = 'queued', last_error = 'lease_expired', claimed_by = NULL, lease_expires_at = NULL,
           updated_at = now()
     WHERE status = 'running' AND lease_expires_at < p_now AND batch_id = ANY (v_batch_ids);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_result := v_result || jsonb_build_object('leases_expired', v_count);

    -- 2. Dispatched but never picked up: re-dispatch while retry_count < max_retries, else fail.
    --    In a stopped batch there is no re-dispatch: the entry is cancelled.
    SELECT array_agg(c.id), array_agg(DISTINCT c.batch_id) INTO v_call_ids, v_batch_ids
      FROM call_logs c JOIN batches b ON b.id = c.batch_id
     WHERE c.status = 'in_queue'
       AND c.status_changed_at < p_now - make_interval(secs => (b.options ->> 'pickup_timeout_s')::integer);
    PERFORM lock_batches(v_batch_ids);
    UPDATE batch_entries e
       SET status = CASE WHEN is_terminal(b.status) THEN 'cancelled'
                         WHEN e.retry_count < (b.options ->> 'max_retries')::integer THEN 'queued'
                         ELSE 'failed' END::entry_status,
           retry_count = e.retry_count
                         + (NOT is_terminal(b.status) AND e.retry_count < (b.options ->> 'max_retries')::integer)::integer,
           last_error = CASE WHEN is_terminal(b.status) THEN 'batch_' || b.status
                             WHEN e.retry_count < (b.options ->> 'max_retries')::integer THEN 'pickup_timeout'
                             ELSE 'max_retries_exceeded' END,
           next_attempt_at = now(), claimed_by = NULL, updated_at = now()
      FROM call_logs c, batches b
     WHERE c.id = ANY (v_call_ids) AND e.call_log_id = c.id AND e.status = 'dispatched' AND b.id = e.batch_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    SELECT count(*) INTO v_requeued FROM batch_entries e
     WHERE e.call_log_id = ANY (v_call_ids) AND e.status = 'queued';
    v_result := v_result || jsonb_build_object('pickup_requeued', v_requeued,
                                               'pickup_failed', v_count - v_requeued);
    v_result := v_result || jsonb_build_object('pickup_timeouts', fail_calls(v_call_ids, 'in_queue', 'pickup_timeout'));

    -- 3. and 4. Stuck ringing or ongoing: the call and (by trigger) its entry fail.
    SELECT array_agg(c.id), array_agg(DISTINCT c.batch_id) INTO v_call_ids, v_batch_ids
      FROM call_logs c JOIN batches b ON b.id = c.batch_id
     WHERE c.status = 'ringing'
       AND c.status_changed_at < p_now - make_interval(secs => (b.options ->> 'ringing_timeout_s')::integer);
    PERFORM lock_batches(v_batch_ids);
    v_result := v_result || jsonb_build_object('ringing_timeouts', fail_calls(v_call_ids, 'ringing', 'ringing_timeout'));

    SELECT array_agg(c.id), array_agg(DISTINCT c.batch_id) INTO v_call_ids, v_batch_ids
      FROM call_logs c JOIN batches b ON b.id = c.batch_id
     WHERE c.status = 'ongoing'
       AND coalesce(c.answered_at, c.status_changed_at)
           < p_now - make_interval(secs => (b.options ->> 'ongoing_timeout_s')::integer);
    PERFORM lock_batches(v_batch_ids);
    v_result := v_result || jsonb_build_object('ongoing_timeouts', fail_calls(v_call_ids, 'ongoing', 'ongoing_timeout'));

    -- 5. Past end_at: entries never dialled end cancelled ('expired').
    SELECT array_agg(b.id) INTO v_batch_ids FROM batches b
     WHERE b.finished_at IS NULL AND b.status IN ('pending', 'running', 'paused')
       AND b.options ->> 'end_at' IS NOT NULL AND (b.options ->> 'end_at')::timestamptz <= p_now;
    PERFORM lock_batches(v_batch_ids);
    UPDATE batch_entries
       SET status = 'cancelled', last_error = 'expired', updated_at = now()
     WHERE batch_id = ANY (v_batch_ids) AND status = 'queued';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_result := v_result || jsonb_build_object('expired', v_count);

    -- 6. Due entries outside their call window wait for its next opening, so claims don't
    --    re-scan them on every call.
    SELECT array_agg(b.id) INTO v_batch_ids FROM batches b
     WHERE b.status = 'running' AND b.queued_count > 0 AND b.options -> 'call_window' <> 'null';
    PERFORM lock_batches(v_batch_ids);
    UPDATE batch_entries e
       SET next_attempt_at = w.opens, updated_at = now()
      FROM (SELECT q.id, next_window_open(b.options -> 'call_window', coalesce(q.timezone, t.timezone), p_now) AS opens
              FROM batches b
              JOIN tenants t ON t.id = b.tenant_id
              JOIN batch_entries q ON q.batch_id = b.id
             WHERE b.id = ANY (v_batch_ids) AND q.status = 'queued' AND q.next_attempt_at <= p_now) w
     WHERE e.id = w.id AND w.opens > p_now;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_result := v_result || jsonb_build_object('deferred_to_window', v_count);

    -- 7. Reports whose sender died mid-send go back to the outbox.
    UPDATE reports SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL
     WHERE status = 'sending' AND lease_expires_at < p_now;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_result := v_result || jsonb_build_object('reports_released', v_count);
    RETURN v_result;
END
$$;

-- Fails the given calls still in p_from with p_error and announces their rooms for hang-up:
-- the call may still be live on LiveKit. Returns how many it failed.
CREATE OR REPLACE FUNCTION batchctl.fail_calls(p_call_ids uuid[], p_from batchctl.call_status, p_error text)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM set_reason('sweep');
    WITH failed AS (
        UPDATE call_logs
           SET status = 'failed', detail = detail || jsonb_build_object('error', p_error)
         WHERE id = ANY (p_call_ids) AND status = p_from
        RETURNING room_name
    ), announced AS (
        SELECT pg_notify('batchctl_hangup', room_name) FROM failed
    )
    SELECT count(*) INTO v_count FROM announced;
    RETURN v_count;
END
$$;

-- sweep(): the timeouts, for cron / pg_cron / the daemon's timer. Idempotent; one sweep at a
-- time (a second concurrent call returns {"skipped": true} at once). Each step finds its rows
-- through the partial indexes of live rows only, so its cost follows the in-flight work, not
-- the history, and a step with nothing to do costs one index probe.
-- p_now lets tests and operators sweep "as of" a later moment.
--
-- Lock order (sql/020): sweep() first finds the rows of every step, then locks all their batches
-- in one statement, in id order, and only then lets the steps change them, each restricted to
-- the rows it found (re-checked under the locks). Locking step by step held a higher batch while
-- waiting for a lower one, which deadlocked with a claim or a cancel holding the lower one.

-- Claims whose lease ran out (the daemon died or stalled): back to the queue, same attempt,
-- unconfirmed: the daemon may have dispatched before it went, so the entry keeps its call slot
-- and its number (sql/032) until a claim of it settles the dispatch.
CREATE OR REPLACE FUNCTION batchctl.sweep_expired_leases(p_entry_ids uuid[], p_now timestamptz)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE batch_entries
       SET status = 'queued', last_error = 'lease_expired', claimed_by = NULL, lease_expires_at = NULL,
           dispatch_unconfirmed = true, updated_at = now()
     WHERE id = ANY (p_entry_ids) AND status = 'running' AND lease_expires_at < p_now;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Calls still in p_status (a live one) longer than the batch option p_timeout_key allows.
-- One generic plan, made once: the live statuses spelled out let it use call_logs_live without
-- knowing p_status. (A plan made per call re-estimated status_changed_at each time, reading the
-- index's ends, which grew with the history: 0.3 ms a call at 200k calls of history.)
CREATE OR REPLACE FUNCTION batchctl.stuck_calls(
    p_status batchctl.call_status, p_timeout_key text, p_now timestamptz)
RETURNS TABLE (call_id uuid, batch_id uuid) LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
    SELECT c.id, c.batch_id
      FROM batchctl.call_logs c
      JOIN batchctl.batches b ON b.id = c.batch_id AND b.tenant_id = c.tenant_id
     WHERE c.status = p_status AND c.status IN ('in_queue', 'ringing', 'ongoing')
       AND c.status_changed_at < p_now - make_interval(secs => (b.options ->> p_timeout_key)::integer)
$$;

-- Fails the calls still in p_from with p_error and queues their rooms for hang-up: the call
-- may still be live on LiveKit. Returns how many it failed.
CREATE OR REPLACE FUNCTION batchctl.fail_calls(
    p_call_ids uuid[], p_from batchctl.call_status, p_error text)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_failed uuid[];
BEGIN
    WITH failed AS (
        UPDATE call_logs
           SET status = 'failed', detail = detail || jsonb_build_object('error', p_error)
         WHERE id = ANY (p_call_ids) AND status = p_from
        RETURNING id
    )
    SELECT array_agg(id) INTO v_failed FROM failed;
    PERFORM request_hangups(v_failed, p_error);
    RETURN coalesce(cardinality(v_failed), 0);
END
$$;

-- Dispatched but never picked up: the entry is dispatched again while retry_count <
-- max_retries, else fails ('max_retries_exceeded'); the re-queue guard cancels it instead in a
-- stopped batch. The entries move before their calls fail, so the call trigger finds them no
-- longer dispatched.
CREATE OR REPLACE FUNCTION batchctl.sweep_unanswered(p_call_ids uuid[])
RETURNS jsonb LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_requeued integer;
    v_ended integer;
BEGIN
    WITH moved AS (
        UPDATE batch_entries e
           SET status = CASE WHEN r.again THEN 'queued' ELSE 'failed' END::entry_status,
               retry_count = e.retry_count + r.again::integer,
               last_error = CASE WHEN r.again THEN 'pickup_timeout' ELSE 'max_retries_exceeded' END,
               next_attempt_at = now(), claimed_by = NULL, updated_at = now()
          FROM call_logs c
          JOIN batches b ON b.id = c.batch_id AND b.tenant_id = c.tenant_id
          JOIN batch_entries cur ON cur.id = c.entry_id AND cur.tenant_id = c.tenant_id
         CROSS JOIN LATERAL (SELECT pickup_retry_allowed(b.options, cur.retry_count) AS again) r
         WHERE c.id = ANY (p_call_ids) AND c.status = 'in_queue'
           AND e.id = c.entry_id AND e.tenant_id = c.tenant_id AND e.call_log_id = c.id
           AND e.status = 'dispatched'
        RETURNING e.status
    )
    SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status <> 'queued')
      INTO v_requeued, v_ended FROM moved;
    RETURN jsonb_build_object('pickup_requeued', v_requeued, 'pickup_failed', v_ended,
                              'pickup_timeouts', fail_calls(p_call_ids, 'in_queue', 'pickup_timeout'));
END
$$;

-- Past end_at: entries never dialled end cancelled ('expired').
CREATE OR REPLACE FUNCTION batchctl.sweep_expired_entries(p_batch_ids uuid[])
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE batch_entries
       SET status = 'cancelled', last_error = 'expired', updated_at = now()
     WHERE batch_id = ANY (p_batch_ids) AND status = 'queued';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- The due entries that may be held back: those of running batches with a call window, or
-- whose tenant's policy or jurisdiction rules may forbid a call (policy_may_hold, sql/029),
-- the batches found first (the condition once per batch). dial_holds (sql/027) tells which of
-- them wait, and until when.
CREATE OR REPLACE FUNCTION batchctl.due_entries_to_check(p_now timestamptz)
RETURNS uuid[] LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    WITH checked AS MATERIALIZED (
        SELECT b.id, b.tenant_id
          FROM batches b
          JOIN tenants t ON t.id = b.tenant_id
         WHERE b.finished_at IS NULL AND b.status = 'running' AND b.queued_count > 0
           AND (b.options -> 'call_window' <> 'null'
                OR policy_may_hold(effective_policy(t.policy),
                                   EXISTS (SELECT FROM jurisdiction_rules)))
    )
    SELECT coalesce(array_agg(q.id), '{}')
      FROM checked b
      JOIN batch_entries q ON q.batch_id = b.id AND q.tenant_id = b.tenant_id
     WHERE q.status = 'queued' AND q.next_attempt_at <= p_now
$$;

-- Reports whose sender died mid-send go back to the outbox.
CREATE OR REPLACE FUNCTION batchctl.release_report_leases(p_now timestamptz)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE reports SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL
     WHERE status = 'sending' AND lease_expires_at < p_now;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.sweep(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_leases uuid[];
    v_unanswered uuid[];
    v_ringing uuid[];
    v_ongoing uuid[];
    v_ended_batches uuid[];
    v_held record;
    v_result jsonb;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('batchctl.sweep')) THEN
        RETURN jsonb_build_object('skipped', true);
    END IF;
    -- What each step will work on, found before any lock is taken.
    SELECT array_agg(id) INTO v_leases
      FROM batch_entries WHERE status = 'running' AND lease_expires_at < p_now;
    SELECT array_agg(call_id) INTO v_unanswered FROM stuck_calls('in_queue', 'pickup_timeout_s', p_now);
    SELECT array_agg(call_id) INTO v_ringing FROM stuck_calls('ringing', 'ringing_timeout_s', p_now);
    SELECT array_agg(call_id) INTO v_ongoing FROM stuck_calls('ongoing', 'ongoing_timeout_s', p_now);
    SELECT array_agg(id) INTO v_ended_batches
      FROM batches
     WHERE finished_at IS NULL AND status IN ('pending', 'running', 'paused') AND queued_count > 0
       AND dialling_over(options, p_now);
    -- Due entries their call window, a rule, a holiday or a limit on their number forbid now.
    -- (Window: held by their call window alone; ruled: by a rule, a holiday or a limit, named.)
    SELECT coalesce(array_agg(DISTINCT h.batch_id), '{}') AS batches,
           coalesce(array_agg(h.entry_id) FILTER (WHERE h.rule IS NULL), '{}') AS window_ids,
           coalesce(array_agg(h.opens) FILTER (WHERE h.rule IS NULL), '{}') AS window_opens,
           coalesce(array_agg(h.entry_id) FILTER (WHERE h.rule IS NOT NULL), '{}') AS ruled_ids,
           coalesce(array_agg(h.opens) FILTER (WHERE h.rule IS NOT NULL), '{}') AS ruled_opens,
           coalesce(array_agg(h.rule) FILTER (WHERE h.rule IS NOT NULL), '{}') AS rules
      INTO v_held
      FROM dial_holds(due_entries_to_check(p_now), p_now, false) h;

    -- Every batch any step will change, locked at once in id order.
    PERFORM lock_batches(ARRAY(
        SELECT batch_id FROM batch_entries WHERE id = ANY (v_leases)
        UNION SELECT batch_id FROM call_logs WHERE id = ANY (v_unanswered || v_ringing || v_ongoing)
        UNION SELECT unnest(v_ended_batches || v_held.batches)));

    PERFORM set_reason('sweep');
    v_result := jsonb_build_object('leases_expired', sweep_expired_leases(v_leases, p_now));
    v_result := v_result || sweep_unanswered(v_unanswered);
    v_result := v_result || jsonb_build_object(
        'ringing_timeouts', fail_calls(v_ringing, 'ringing', 'ringing_timeout'),
        'ongoing_timeouts', fail_calls(v_ongoing, 'ongoing', 'ongoing_timeout'),
        'expired', sweep_expired_entries(v_ended_batches),
        'deferred_to_window', hold_back(v_held.window_ids, v_held.window_opens,
                                        array_fill(NULL::text, ARRAY[cardinality(v_held.window_ids)]),
                                        p_now),
        'held_by_rules', hold_back(v_held.ruled_ids, v_held.ruled_opens, v_held.rules, p_now),
        'reports_released', release_report_leases(p_now));
    RETURN v_result;
END
$$;

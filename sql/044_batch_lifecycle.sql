-- A batch's life (the tenant API, part 3): start, pause, resume, cancel (and the
-- administrative fail), cancel one entry, and its status.
-- Each tenant function takes p_tenant_id first and answers "not found" (BC002) for another
-- tenant's objects. SECURITY DEFINER: callers need EXECUTE only, not table rights.

CREATE OR REPLACE FUNCTION batchctl.change_batch_status(
    p_tenant_id uuid, p_batch_id uuid, p_from batchctl.batch_status, p_to batchctl.batch_status,
    p_action text)
RETURNS void LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch batches := lock_tenant_batch(p_tenant_id, p_batch_id);
BEGIN
    IF v_batch.status = p_to THEN
        RETURN;  -- already there: repeating a start, pause or resume is harmless
    END IF;
    IF v_batch.status <> p_from THEN
        RAISE EXCEPTION 'batch % is %; only a % batch can be %', p_batch_id, v_batch.status, p_from, p_action
            USING ERRCODE = 'BC003';
    END IF;
    PERFORM set_reason(p_action);
    UPDATE batches SET status = p_to WHERE id = p_batch_id AND tenant_id = p_tenant_id;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.start_batch(p_tenant_id uuid, p_batch_id uuid)
RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT change_batch_status(p_tenant_id, p_batch_id, 'pending', 'running', 'started') $$;

CREATE OR REPLACE FUNCTION batchctl.pause_batch(p_tenant_id uuid, p_batch_id uuid)
RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT change_batch_status(p_tenant_id, p_batch_id, 'running', 'paused', 'paused') $$;

CREATE OR REPLACE FUNCTION batchctl.resume_batch(p_tenant_id uuid, p_batch_id uuid)
RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT change_batch_status(p_tenant_id, p_batch_id, 'paused', 'running', 'resumed') $$;

-- Stops a batch as cancelled (cancel_batch) or failed (fail_batch): entries not yet dialling are
-- cancelled now; live calls are announced for hang-up and the batch finishes when they end.
-- Returns the number of entries cancelled now.
CREATE OR REPLACE FUNCTION batchctl.stop_batch(
    p_tenant_id uuid, p_batch_id uuid, p_status batchctl.batch_status, p_reason text)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch batches := lock_tenant_batch(p_tenant_id, p_batch_id);
    v_cancelled integer;
BEGIN
    IF text_problem(p_reason) IS NOT NULL THEN
        RAISE EXCEPTION 'p_reason %', text_problem(p_reason) USING ERRCODE = 'BC001';
    END IF;
    IF v_batch.status = p_status THEN
        RETURN 0;
    END IF;
    IF is_terminal(v_batch.status) THEN
        RAISE EXCEPTION 'batch % is already %; only a pending, running or paused batch can be stopped',
            p_batch_id, v_batch.status USING ERRCODE = 'BC003';
    END IF;
    PERFORM set_reason(concat_ws(': ', CASE p_status WHEN 'cancelled' THEN 'cancel_batch' ELSE 'fail_batch' END,
                                 p_reason));
    -- The batch leaves running first, so cancelling its last queued entries cannot complete it.
    UPDATE batches SET status = p_status, cancel_reason = p_reason
     WHERE id = p_batch_id AND tenant_id = p_tenant_id;
    UPDATE batch_entries
       SET status = 'cancelled', last_error = 'batch_' || p_status, claimed_by = NULL,
           lease_expires_at = NULL, updated_at = now()
     -- Two arms, not IN: each arm reads its own partial index (entries_claimable,
     -- entries_in_flight), never the batch's history.
     WHERE batch_id = p_batch_id AND tenant_id = p_tenant_id
       AND (status = 'queued' OR status = 'running');
    GET DIAGNOSTICS v_cancelled = ROW_COUNT;
    PERFORM request_hangups(array_agg(e.call_log_id), 'batch_' || p_status)
       FROM batch_entries e
      WHERE e.batch_id = p_batch_id AND e.tenant_id = p_tenant_id AND e.status = 'dispatched';
    RETURN v_cancelled;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.cancel_batch(p_tenant_id uuid, p_batch_id uuid, p_reason text DEFAULT NULL)
RETURNS integer LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT stop_batch(p_tenant_id, p_batch_id, 'cancelled', p_reason) $$;

-- Administrative: any non-terminal batch -> failed. Not granted to the tenant role.
CREATE OR REPLACE FUNCTION batchctl.fail_batch(p_tenant_id uuid, p_batch_id uuid, p_reason text)
RETURNS integer LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT stop_batch(p_tenant_id, p_batch_id, 'failed', p_reason) $$;

-- true when the entry was cancelled now (it was queued or being claimed). A live call is
-- announced for hang-up instead and the entry ends with the call's outcome, never retried:
-- false.
CREATE OR REPLACE FUNCTION batchctl.cancel_entry(p_tenant_id uuid, p_entry_id uuid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch_id uuid;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    SELECT batch_id INTO v_batch_id FROM batch_entries WHERE id = p_entry_id AND tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entry % not found', p_entry_id USING ERRCODE = 'BC002';
    END IF;
    PERFORM lock_tenant_batches(p_tenant_id, ARRAY[v_batch_id]);
    PERFORM set_reason('cancel_entry');
    UPDATE batch_entries
       SET status = 'cancelled', last_error = 'cancelled', claimed_by = NULL, lease_expires_at = NULL,
           updated_at = now()
     WHERE id = p_entry_id AND tenant_id = p_tenant_id AND status IN ('queued', 'running');
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM cancel_live_entries(ARRAY[p_tenant_id], ARRAY[p_entry_id], 'entry_cancelled');
    RETURN false;
END
$$;

-- The live calls of these entries (p_tenant_ids[i]'s p_entry_ids[i]; those dispatched) are
-- announced for hang-up with p_reason, and each entry ends with its call's outcome, never
-- retried (cancel_requested), keeping p_reason as its last_error unless the call failed. cancel_entry's path for a live call, and an opt-out's for the
-- number's calls in other batches (sql/040). The caller holds the entries' batches.
CREATE OR REPLACE FUNCTION batchctl.cancel_live_entries(
    p_tenant_ids uuid[], p_entry_ids uuid[], p_reason text)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_call_ids uuid[];
BEGIN
    WITH asked AS (
        UPDATE batch_entries e SET cancel_requested = true, last_error = p_reason, updated_at = now()
          FROM unnest(p_tenant_ids, p_entry_ids) AS x (tenant_id, id)
         WHERE e.id = x.id AND e.tenant_id = x.tenant_id AND e.status = 'dispatched'
        RETURNING e.call_log_id
    )
    SELECT array_agg(call_log_id) INTO v_call_ids FROM asked;
    RETURN request_hangups(v_call_ids, p_reason);
END
$$;

-- O(1): read from the counters on the batch row.
CREATE OR REPLACE FUNCTION batchctl.batch_status(p_tenant_id uuid, p_batch_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    SELECT jsonb_build_object(
               'batch_id', b.id, 'status', b.status, 'total', b.total,
               'queued', b.queued_count, 'running', b.running_count, 'dispatched', b.dispatched_count,
               'completed', b.completed_count, 'failed', b.failed_count,
               'declined', b.declined_count, 'cancelled', b.cancelled_count,
               'pending', b.queued_count + b.running_count + b.dispatched_count,
               'duplicates', b.duplicates, 'dnc_skipped', b.dnc_skipped,
               'created_at', b.created_at, 'started_at', b.started_at, 'finished_at', b.finished_at)
      INTO v
      FROM batches b WHERE b.id = p_batch_id AND b.tenant_id = p_tenant_id;
    IF v IS NULL THEN
        RAISE EXCEPTION 'batch % not found', p_batch_id USING ERRCODE = 'BC002';
    END IF;
    RETURN v;
END
$$;

-- Call log triggers: the forward-only guard, timestamps, and — in the same transaction — the
-- entry following its call to a terminal status (with the retry policy applied), so that a lost
-- callback can never leave an entry behind its call.

CREATE OR REPLACE FUNCTION batchctl.call_logs_before_update()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT call_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'call %: cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'BC003',
                  HINT = CASE WHEN is_terminal(OLD.status) THEN 'a terminal call never changes'
                              ELSE 'calls only move forward: in_queue, ringing, ongoing, then an outcome' END;
    END IF;
    -- By the claim's clock (sql/027: now(), or a test's pinned time), as the call's start is:
    -- frequency caps and cool-offs count from these.
    NEW.status_changed_at := clock();
    IF NEW.status = 'ongoing' THEN
        NEW.answered_at := NEW.status_changed_at;
    END IF;
    IF is_terminal(NEW.status) THEN
        NEW.ended_at := NEW.status_changed_at;
        NEW.duration_seconds := CASE
            WHEN jsonb_typeof(NEW.detail -> 'duration_seconds') = 'number'
                THEN (NEW.detail ->> 'duration_seconds')::numeric
            WHEN NEW.answered_at IS NOT NULL
                THEN extract(epoch FROM NEW.ended_at - NEW.answered_at)
        END;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.call_logs_after_insert()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
    SELECT n.tenant_id, n.batch_id, 'call', n.id, NULL, n.status, current_reason()
      FROM new_calls n;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.call_logs_after_update()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_calls) THEN
        RETURN NULL;  -- statement triggers fire for zero-row updates too (an idle sweep)
    END IF;
    INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
    SELECT n.tenant_id, n.batch_id, 'call', n.id, o.status, n.status,
           concat_ws(': ', current_reason(), left(n.detail ->> 'error', max_text_length()))
      FROM old_calls o JOIN new_calls n USING (id)
     WHERE o.status <> n.status;

    IF NOT EXISTS (SELECT 1 FROM new_calls WHERE is_terminal(status)) THEN
        RETURN NULL;  -- ringing, ongoing: the entry stays dispatched
    END IF;

    -- The entry follows its current call. A retryable outcome with attempts left (the retry
    -- policy, sql/028) re-queues it after the delay, unless the batch is stopped or the entry's
    -- cancel was asked for. Attempts never picked up (sweep's re-dispatches, retry_count) do not
    -- count against max_attempts.
    UPDATE batch_entries e
       SET status = CASE WHEN r.retry THEN 'queued' ELSE entry_status_for_call(n.status) END,
           outcome = n.status,
           next_attempt_at = CASE WHEN r.retry THEN now() + r.delay ELSE e.next_attempt_at END,
           last_error = CASE
               WHEN r.retry THEN 'retry after ' || n.status
               WHEN entry_status_for_call(n.status) = 'failed'
                   THEN coalesce(left(n.detail ->> 'error', max_text_length()), n.status::text)
               -- Hung up on request: why (entry_cancelled, opted_out: cancel_live_entries).
               WHEN cur.cancel_requested THEN cur.last_error
           END,
           claimed_by = NULL,
           updated_at = now()
      FROM old_calls o
      JOIN new_calls n USING (id)
      JOIN batches b ON b.id = n.batch_id AND b.tenant_id = n.tenant_id
      JOIN batch_entries cur ON cur.id = n.entry_id AND cur.tenant_id = n.tenant_id
      CROSS JOIN LATERAL (
          SELECT outcome_retry_delay(b.options, n.status, cur.attempts - cur.retry_count) AS delay
      ) d
      CROSS JOIN LATERAL (
          SELECT d.delay,
                 d.delay IS NOT NULL AND NOT cur.cancel_requested
                 AND b.status IN ('running', 'paused') AS retry
      ) r
     WHERE e.id = n.entry_id AND e.tenant_id = n.tenant_id
       AND e.call_log_id = n.id
       AND e.status = 'dispatched'
       AND o.status <> n.status
       AND is_terminal(n.status);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER call_logs_before_update BEFORE UPDATE ON batchctl.call_logs
    FOR EACH ROW EXECUTE FUNCTION batchctl.call_logs_before_update();
CREATE OR REPLACE TRIGGER call_logs_after_insert AFTER INSERT ON batchctl.call_logs
    REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.call_logs_after_insert();
CREATE OR REPLACE TRIGGER call_logs_after_update AFTER UPDATE ON batchctl.call_logs
    REFERENCING OLD TABLE AS old_calls NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.call_logs_after_update();

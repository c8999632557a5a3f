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

    -- A call its trunk's carrier took (answered, or ended other than by a capacity refusal)
    -- ends that trunk's back-off (docs/trunks.md).
    UPDATE trunks t SET refusals = 0, backoff_until = NULL
     WHERE t.refusals > 0
       AND (t.tenant_id, t.id) IN (
           SELECT n.tenant_id, n.trunk_id FROM new_calls n
            WHERE n.trunk_id IS NOT NULL
              AND (n.status = 'ongoing' OR is_terminal(n.status) AND NOT carrier_refused(n.detail)));

    IF NOT EXISTS (SELECT 1 FROM new_calls WHERE is_terminal(status)) THEN
        RETURN NULL;  -- ringing, ongoing: the entry stays dispatched
    END IF;

    -- The entry follows its current call. A retryable outcome with attempts left (the retry
    -- policy, sql/028) re-queues it after the delay, unless the batch is stopped or the entry's
    -- cancel was asked for. Attempts never picked up (sweep's re-dispatches, retry_count) and
    -- calls the carrier refused for capacity (carrier_refusals) do not count against
    -- max_attempts. A refused call is tried again when its trunk's back-off ends. A refusal of a
    -- call paced after the trunk's back-off began moves it out (its batch is locked already:
    -- lock order); the calls slotted before it, refused with it, move nothing: one burst is one
    -- refusal.
    WITH ended AS (
        SELECT n.id, n.entry_id, n.tenant_id, n.batch_id, n.status, n.detail, n.trunk_id,
               n.trunk_id IS NOT NULL AND carrier_refused(n.detail) AS refused
          FROM old_calls o JOIN new_calls n USING (id)
         WHERE o.status <> n.status AND is_terminal(n.status)
    ), backed_off AS (
        UPDATE trunks t
           SET refusals = t.refusals + 1, backoff_until = clock() + carrier_backoff(t.refusals + 1)
         WHERE EXISTS (
                   SELECT FROM ended x
                     JOIN batch_entries cur ON cur.id = x.entry_id AND cur.tenant_id = x.tenant_id
                    WHERE x.refused AND x.tenant_id = t.tenant_id AND x.trunk_id = t.id
                      AND NOT coalesce(cur.dial_at < t.backoff_until, false))
        RETURNING t.id, t.backoff_until
    )
    UPDATE batch_entries e
       SET status = CASE WHEN r.retry THEN 'queued' ELSE entry_status_for_call(n.status) END,
           outcome = n.status,
           next_attempt_at = CASE WHEN r.retry THEN r.at ELSE e.next_attempt_at END,
           carrier_refusals = e.carrier_refusals + n.refused::integer,
           last_error = CASE
               WHEN r.retry AND n.refused
                   THEN left('carrier refused: ' || coalesce(n.detail ->> 'error', n.status::text), max_text_length())
               WHEN r.retry THEN 'retry after ' || n.status
               WHEN entry_status_for_call(n.status) = 'failed'
                   THEN coalesce(left(n.detail ->> 'error', max_text_length()), n.status::text)
               -- Hung up on request: why (entry_cancelled, opted_out: cancel_live_entries).
               WHEN cur.cancel_requested THEN cur.last_error
           END,
           claimed_by = NULL,
           updated_at = now()
      FROM ended n
      JOIN batches b ON b.id = n.batch_id AND b.tenant_id = n.tenant_id
      JOIN batch_entries cur ON cur.id = n.entry_id AND cur.tenant_id = n.tenant_id
      LEFT JOIN backed_off k ON k.id = n.trunk_id
      LEFT JOIN trunks tr ON tr.tenant_id = n.tenant_id AND tr.id = n.trunk_id  -- (before backed_off)
      CROSS JOIN LATERAL (
          SELECT CASE
                     WHEN n.refused AND carrier_retry_allowed(cur.carrier_refusals + 1)
                         THEN greatest(k.backoff_until, tr.backoff_until, clock())
                     WHEN n.refused THEN NULL
                     ELSE now() + outcome_retry_delay(b.options, n.status,
                                                      cur.attempts - cur.retry_count - cur.carrier_refusals)
                 END AS at
      ) d
      CROSS JOIN LATERAL (
          SELECT d.at, d.at IS NOT NULL AND NOT cur.cancel_requested
                       AND b.status IN ('running', 'paused') AS retry
      ) r
     WHERE e.id = n.entry_id AND e.tenant_id = n.tenant_id
       AND e.call_log_id = n.id
       AND e.status = 'dispatched';
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

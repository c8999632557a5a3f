-- The webhook outbox (docs/webhooks.md): which audited transitions are webhook events, their
-- data, and the triggers that queue them for the tenant's endpoints in the transaction of the
-- transition. The tenant API and the daemon's claim are sql/059.

-- Every event type an endpoint may ask for ('ping' is sent by `batchctl endpoint test` only).
CREATE OR REPLACE FUNCTION batchctl.webhook_event_types()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['call.ended', 'entry.finished', 'batch.started', 'batch.paused', 'batch.resumed',
             'batch.finished', 'report.sent'];

-- The webhook event an audit event is (null: none): a call or an entry reaching its end, a
-- batch starting, pausing or resuming. (A batch's finish is its report row's: sql/030 writes it
-- once, when nothing is pending.)
CREATE OR REPLACE FUNCTION batchctl.webhook_event_type(p_object text, p_from text, p_to text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_object = 'call' AND p_to NOT IN ('in_queue', 'ringing', 'ongoing') THEN 'call.ended'
    WHEN p_object = 'entry' AND p_to IN ('completed', 'failed', 'declined', 'cancelled')
        THEN 'entry.finished'
    WHEN p_object = 'batch' AND p_to = 'running' AND p_from = 'paused' THEN 'batch.resumed'
    WHEN p_object = 'batch' AND p_to = 'running' THEN 'batch.started'
    WHEN p_object = 'batch' AND p_to = 'paused' THEN 'batch.paused'
END;

-- The "data" of a webhook event of type p_type about p_object_id (a call log, an entry or the
-- batch p_batch_id): ids, the lead's own fields and the batch's metadata (docs/webhooks.md).
CREATE OR REPLACE FUNCTION batchctl.webhook_data(p_type text, p_object_id uuid, p_batch_id uuid)
RETURNS jsonb LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT CASE p_type
        WHEN 'call.ended' THEN (
            SELECT jsonb_build_object(
                       'call_log_id', c.id, 'entry_id', c.entry_id, 'batch_id', c.batch_id,
                       'tenant_id', c.tenant_id, 'attempt', c.attempt, 'status', c.status,
                       'to_phone', e.to_phone, 'started_at', c.started_at,
                       'answered_at', c.answered_at, 'ended_at', c.ended_at,
                       'duration_seconds', c.duration_seconds, 'caller_id', c.caller_id,
                       'detail', c.detail, 'lead_id', e.lead_id, 'lead_name', e.lead_name,
                       'context', e.context, 'metadata', b.options -> 'metadata')
              FROM call_logs c
              JOIN batch_entries e ON e.tenant_id = c.tenant_id AND e.id = c.entry_id
              JOIN batches b ON b.tenant_id = c.tenant_id AND b.id = c.batch_id
             WHERE c.id = p_object_id)
        WHEN 'entry.finished' THEN (
            SELECT jsonb_build_object(
                       'entry_id', e.id, 'batch_id', e.batch_id, 'tenant_id', e.tenant_id,
                       'status', e.status, 'outcome', e.outcome, 'attempts', e.attempts,
                       'last_error', e.last_error, 'to_phone', e.to_phone, 'lead_id', e.lead_id,
                       'lead_name', e.lead_name, 'context', e.context,
                       'metadata', b.options -> 'metadata')
              FROM batch_entries e
              JOIN batches b ON b.tenant_id = e.tenant_id AND b.id = e.batch_id
             WHERE e.id = p_object_id AND e.batch_id = p_batch_id)
        ELSE (
            SELECT jsonb_build_object(
                       'batch_id', b.id, 'tenant_id', b.tenant_id, 'status', b.status,
                       'total', b.total, 'queued', b.queued_count, 'running', b.running_count,
                       'dispatched', b.dispatched_count, 'completed', b.completed_count,
                       'failed', b.failed_count, 'declined', b.declined_count,
                       'cancelled', b.cancelled_count, 'created_at', b.created_at,
                       'started_at', b.started_at, 'finished_at', b.finished_at,
                       'metadata', b.options -> 'metadata')
                   || CASE WHEN p_type = 'report.sent' THEN (
                          SELECT jsonb_build_object('recipients', r.recipients, 'sent_at', r.sent_at)
                            FROM reports r WHERE r.batch_id = b.id) ELSE '{}' END
              FROM batches b WHERE b.id = p_batch_id)
    END
$$;

-- Queues p_events (in the order given) for every enabled endpoint of their tenants that asked
-- for their type, and wakes the daemons. The callers are triggers, in the transaction of the
-- transition: a rolled-back transition queues nothing. Only a batch's start, pause and resume
-- carry their data from here (the counters of that moment); a call's or an entry's is rendered
-- by the first claim, from rows that are final (webhook_payload).
CREATE OR REPLACE FUNCTION batchctl.queue_webhooks(p_events batchctl.webhook_event[])
RETURNS void LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_queued integer;
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, batch_id, message_id, event_type,
                                    ordering_key, object_id, payload)
    SELECT w.tenant_id, w.id, v.batch_id, v.message_id, v.type, v.key, v.object_id,
           jsonb_build_object('type', v.type, 'timestamp', now())
           || CASE WHEN v.type IN ('batch.started', 'batch.paused', 'batch.resumed')
                   THEN jsonb_build_object('data', webhook_data(v.type, v.object_id, v.batch_id))
                   ELSE '{}' END
      FROM unnest(p_events) WITH ORDINALITY AS v (tenant_id, batch_id, type, key, message_id,
                                                  object_id, ord)
      JOIN webhook_endpoints w
        ON w.tenant_id = v.tenant_id AND w.disabled_at IS NULL
       AND (w.events IS NULL OR v.type = ANY (w.events))
     ORDER BY v.ord, w.id;
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    IF v_queued > 0 THEN
        PERFORM pg_notify('batchctl_webhook', '');
    END IF;
END
$$;

-- The audit's events become webhook events (webhook_event_type), ordered per entry (a call's by
-- its entry) or per batch.
CREATE OR REPLACE FUNCTION batchctl.events_after_insert_webhooks()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_events webhook_event[];
BEGIN
    -- Most statements carry no webhook event (a claim, a call ringing), and most tenants have
    -- no endpoint: two cheap probes before any work.
    IF NOT EXISTS (SELECT FROM new_events n
                    WHERE webhook_event_type(n.object, n.from_status, n.to_status) IS NOT NULL)
       OR NOT EXISTS (SELECT FROM webhook_endpoints w
                       WHERE w.tenant_id IN (SELECT n.tenant_id FROM new_events n)
                         AND w.disabled_at IS NULL) THEN
        RETURN NULL;
    END IF;
    v_events := ARRAY(
        SELECT ROW(n.tenant_id, n.batch_id, k.type,
                   CASE n.object WHEN 'batch' THEN n.batch_id
                                 WHEN 'call' THEN c.entry_id ELSE n.object_id END,
                   'msg_' || n.id, n.object_id)::webhook_event
          FROM new_events n
         CROSS JOIN LATERAL (SELECT webhook_event_type(n.object, n.from_status, n.to_status) AS type) k
          LEFT JOIN call_logs c ON n.object = 'call' AND c.tenant_id = n.tenant_id AND c.id = n.object_id
         WHERE NOT n.ignored AND k.type IS NOT NULL
         ORDER BY n.id);
    IF cardinality(v_events) > 0 THEN  -- (a call ringing or answered is no webhook event)
        PERFORM queue_webhooks(v_events);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER events_after_insert_webhooks AFTER INSERT ON batchctl.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.events_after_insert_webhooks();

-- A batch's finish (its report row, written once when nothing is pending: sql/030) and its
-- report's sending.
CREATE OR REPLACE FUNCTION batchctl.reports_webhooks()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM queue_webhooks(ARRAY[ROW(NEW.tenant_id, NEW.batch_id, 'batch.finished',
                                         NEW.batch_id, 'msg_finished_' || NEW.batch_id,
                                         NEW.batch_id)::webhook_event]);
    ELSIF NEW.status = 'sent' AND OLD.status <> 'sent' THEN
        PERFORM queue_webhooks(ARRAY[ROW(NEW.tenant_id, NEW.batch_id, 'report.sent',
                                         NEW.batch_id, 'msg_report_' || NEW.batch_id,
                                         NEW.batch_id)::webhook_event]);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER reports_webhooks AFTER INSERT OR UPDATE OF status ON batchctl.reports
    FOR EACH ROW EXECUTE FUNCTION batchctl.reports_webhooks();

-- The report outbox, for the daemon. A row is written (pending, or skipped without report_to) in
-- the transaction that finishes its batch; sending it never touches the batch.
-- Attempts: at most 5, with backoff 1, 2, 4, 8 minutes between them.

-- Claims one due report (status sending, 10-minute lease; sweep() releases an expired one).
CREATE OR REPLACE FUNCTION batchctl.claim_report(p_worker text)
RETURNS TABLE (batch_id uuid, tenant_id uuid, recipients text[], attempt integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
    UPDATE batchctl.reports r
       SET status = 'sending', claimed_by = p_worker, attempts = r.attempts + 1,
           lease_expires_at = now() + interval '10 minutes'
      FROM (SELECT d.batch_id FROM batchctl.reports d
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
             ORDER BY d.next_attempt_at
             LIMIT 1
               FOR UPDATE SKIP LOCKED) due
     WHERE r.batch_id = due.batch_id
    RETURNING r.batch_id, r.tenant_id, r.recipients, r.attempts
$$;

CREATE OR REPLACE FUNCTION batchctl.report_sent(p_batch_id uuid)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_status report_status;
BEGIN
    UPDATE reports SET status = 'sent', sent_at = now(), last_error = NULL, lease_expires_at = NULL
     WHERE batch_id = p_batch_id AND status = 'sending'
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM reports WHERE batch_id = p_batch_id;
        IF v_status IS NULL THEN
            RAISE EXCEPTION 'no report for batch %', p_batch_id USING ERRCODE = 'BC002';
        ELSIF v_status <> 'sent' THEN
            RAISE EXCEPTION 'report of batch % is %, not sending', p_batch_id, v_status USING ERRCODE = 'BC003';
        END IF;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.report_failed(p_batch_id uuid, p_error text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog
AS $$
DECLARE
    v_status report_status;
BEGIN
    UPDATE reports
       SET status = CASE WHEN attempts >= 5 THEN 'failed' ELSE 'pending' END::report_status,
           next_attempt_at = now() + make_interval(mins => (2 ^ (attempts - 1))::integer),
           last_error = coalesce(p_error, 'unknown error'), lease_expires_at = NULL
     WHERE batch_id = p_batch_id AND status = 'sending'
    RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM reports WHERE batch_id = p_batch_id;
        IF v_status IS NULL THEN
            RAISE EXCEPTION 'no report for batch %', p_batch_id USING ERRCODE = 'BC002';
        END IF;
        RAISE EXCEPTION 'report of batch % is %, not sending', p_batch_id, v_status USING ERRCODE = 'BC003';
    END IF;
END
$$;

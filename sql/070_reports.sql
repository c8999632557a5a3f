-- The report outbox, for the daemon. A row is written (pending, or skipped without report_to) in
-- the transaction that finishes its batch; sending it never touches the batch.
-- Attempts: at most 5, with backoff 1, 2, 4, 8 minutes between them.

-- Claims one due report (status sending, 10-minute lease; sweep() releases an expired one).
CREATE OR REPLACE FUNCTION batchctl.claim_report(p_worker text)
RETURNS TABLE (batch_id uuid, tenant_id uuid, recipients text[], attempt integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    UPDATE batchctl.reports r
       SET status = 'sending', claimed_by = p_worker, attempts = r.attempts + 1,
           lease_expires_at = now() + batchctl.report_lease()
      FROM (SELECT d.batch_id, d.tenant_id FROM batchctl.reports d
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
             ORDER BY d.next_attempt_at
             LIMIT 1
               FOR UPDATE SKIP LOCKED) due
     WHERE r.batch_id = due.batch_id AND r.tenant_id = due.tenant_id
    RETURNING r.batch_id, r.tenant_id, r.recipients, r.attempts
$$;

CREATE OR REPLACE FUNCTION batchctl.report_sent(p_batch_id uuid)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
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
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_status report_status;
BEGIN
    UPDATE reports
       SET status = CASE WHEN attempts >= report_attempts_allowed() THEN 'failed' ELSE 'pending' END::report_status,
           next_attempt_at = now() + report_retry_delay(attempts),
           last_error = coalesce(left(p_error, max_text_length()), 'unknown error'),
           lease_expires_at = NULL
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

-- Claims one finished batch's report for an immediate (re)send by `batchctl report --send`,
-- whatever its status (pending, sent, failed, skipped), so that the daemon's claim_report, which
-- takes pending rows only, cannot send it at the same moment. p_recipients, when given,
-- replaces the stored recipients (a batch without report_to needs them). Like claim_report it
-- counts an attempt and leases the row for 10 minutes; finish with report_sent / report_failed.
CREATE OR REPLACE FUNCTION batchctl.claim_report_now(
    p_batch_id uuid, p_worker text, p_recipients text[] DEFAULT NULL)
RETURNS TABLE (batch_id uuid, tenant_id uuid, recipients text[], attempt integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_tenant_id uuid;
    v_report reports;
    v_batch_status batch_status;
    v_bad text;
BEGIN
    IF p_recipients IS NOT NULL THEN
        v_bad := CASE WHEN cardinality(p_recipients) = 0 THEN ': an empty list is not an e-mail address'
                      ELSE recipients_problem(p_recipients) END;
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'p_recipients%', v_bad USING ERRCODE = 'BC001';
        END IF;
    END IF;
    -- The row is locked by its full key: distributed by tenant, FOR UPDATE must name the tenant.
    SELECT r.tenant_id INTO v_tenant_id FROM reports r WHERE r.batch_id = p_batch_id;
    SELECT * INTO v_report FROM reports r
     WHERE r.batch_id = p_batch_id AND r.tenant_id = v_tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT b.status INTO v_batch_status FROM batches b WHERE b.id = p_batch_id;
        IF v_batch_status IS NULL THEN
            RAISE EXCEPTION 'batch % not found', p_batch_id USING ERRCODE = 'BC002';
        END IF;
        RAISE EXCEPTION 'batch % is %, not finished: its report is queued when it finishes',
            p_batch_id, v_batch_status USING ERRCODE = 'BC003';
    END IF;
    IF v_report.status = 'sending' AND v_report.lease_expires_at > now() THEN
        RAISE EXCEPTION 'the report of batch % is being sent by % right now', p_batch_id,
            v_report.claimed_by USING ERRCODE = 'BC003';
    END IF;
    IF cardinality(coalesce(p_recipients, v_report.recipients)) = 0 THEN
        RAISE EXCEPTION 'batch % has no report_to: name the recipients', p_batch_id
            USING ERRCODE = 'BC001';
    END IF;
    RETURN QUERY
    UPDATE reports r
       SET status = 'sending', claimed_by = p_worker, attempts = r.attempts + 1,
           lease_expires_at = now() + report_lease(),
           recipients = coalesce(p_recipients, r.recipients)
     WHERE r.batch_id = p_batch_id AND r.tenant_id = v_tenant_id
    RETURNING r.batch_id, r.tenant_id, r.recipients, r.attempts;
END
$$;

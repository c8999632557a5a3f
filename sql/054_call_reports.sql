-- The voice worker's reports of its calls' statuses (report_call_status, and
-- report_call_statuses for many): the call moves forward, and its entry follows on the final one
-- (sql/034).

-- What is wrong with one status report, or null: "status: …", "detail: …",
-- "detail.duration_seconds: …" or "detail.opt_out: …" (callers say which report it was). On
-- every report's path, so like the rules in sql/010 a SQL-standard body without SET, which
-- PostgreSQL inlines (STABLE, as enum_range is: an IMMUTABLE function calling it would not be
-- inlined).
CREATE OR REPLACE FUNCTION batchctl.call_report_problem(p_status text, p_detail jsonb)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN p_status IS NULL OR NOT p_status = ANY (pg_catalog.enum_range(NULL::batchctl.call_status)::text[])
        THEN pg_catalog.format('status: unknown call status %s, allowed: %s',
                               coalesce(pg_catalog.quote_literal(p_status), 'null'),
                               pg_catalog.array_to_string(pg_catalog.enum_range(NULL::batchctl.call_status)::text[], ', '))
    WHEN pg_catalog.jsonb_typeof(coalesce(p_detail, '{}')) <> 'object'
        THEN pg_catalog.format('detail: expected a JSON object, got %s', pg_catalog.jsonb_typeof(p_detail))
    WHEN batchctl.json_problem(p_detail, batchctl.max_detail_bytes()) IS NOT NULL
        THEN 'detail: ' || batchctl.json_problem(p_detail, batchctl.max_detail_bytes())
    WHEN p_detail ? 'duration_seconds'
         AND (pg_catalog.jsonb_typeof(p_detail -> 'duration_seconds') <> 'number'
              OR (p_detail ->> 'duration_seconds')::numeric NOT BETWEEN 0 AND batchctl.max_call_seconds())
        THEN pg_catalog.format('detail.duration_seconds: expected a number of seconds from 0 to %s, got %s',
                               batchctl.max_call_seconds(), p_detail -> 'duration_seconds')
    WHEN p_detail ? 'opt_out' AND pg_catalog.jsonb_typeof(p_detail -> 'opt_out') <> 'boolean'
        THEN pg_catalog.format('detail.opt_out: expected true or false, got %s', p_detail -> 'opt_out')
END;

-- Many voice-worker reports in one transaction (a completer flushing what arrived meanwhile:
-- the webhook receiver's, or a worker fleet's). Each report means what report_call_status says.
-- Reports of one call apply in input order, reports of different calls side by side: a round
-- takes each call's next report (usually one round does all). Returns, per input in order, the
-- call log id, its entry's status after, and why the report was not applied: what is wrong
-- with it (as report_call_status's BC001 would say), or 'call log not found' (status null).
-- A bad report never costs the others theirs: each valid one is applied.
CREATE OR REPLACE FUNCTION batchctl.report_call_statuses(
    p_call_log_ids uuid[], p_statuses text[], p_details jsonb[] DEFAULT NULL)
RETURNS TABLE (call_log_id uuid, status text, error text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_problems text[];  -- per report, what is wrong with it, or null
    v_rounds integer;
    v_opt_tenants uuid[];  -- the opt-outs: per call, its tenant, number and batch
    v_opt_phones text[];
    v_opt_calls uuid[];
    v_opt_batches uuid[];
    v_batch_ids uuid[];
BEGIN
    PERFORM check_parallel_arrays('p_statuses, p_details', 'call log id', cardinality(p_call_log_ids),
                                  cardinality(p_statuses), cardinality(p_details));
    SELECT array_agg(call_report_problem(r.status, r.detail) ORDER BY r.ord) INTO v_problems
      FROM unnest(p_statuses, p_details) WITH ORDINALITY AS r (status, detail, ord);
    -- How many rounds: the most valid reports of one call.
    SELECT max(r.nth) INTO v_rounds
      FROM (SELECT row_number() OVER (PARTITION BY r.id ORDER BY r.ord) AS nth
              FROM unnest(p_call_log_ids) WITH ORDINALITY AS r (id, ord)
             WHERE v_problems[r.ord] IS NULL) r;

    -- Opt-outs: the calls of valid reports with "opt_out": true, whatever their status.
    SELECT array_agg(o.tenant_id ORDER BY o.ord), array_agg(o.to_phone ORDER BY o.ord),
           array_agg(o.id ORDER BY o.ord), array_agg(o.batch_id ORDER BY o.ord)
      INTO v_opt_tenants, v_opt_phones, v_opt_calls, v_opt_batches
      FROM (SELECT DISTINCT ON (c.id) c.id, c.tenant_id, c.batch_id, e.to_phone, r.ord
              FROM unnest(p_call_log_ids, p_details) WITH ORDINALITY AS r (id, detail, ord)
              JOIN call_logs c ON c.id = r.id
              JOIN batch_entries e ON e.id = c.entry_id AND e.tenant_id = c.tenant_id
             WHERE v_problems[r.ord] IS NULL AND r.detail -> 'opt_out' = 'true'
             ORDER BY c.id, r.ord) o;

    -- A final report moves its entry and the batch's counters, an opt-out its call's entry and
    -- its number's (dnc_batches): lock those batches first, all at once.
    -- (The CASEs keep a malformed status from ever being cast.)
    v_batch_ids := ARRAY(
        SELECT DISTINCT c.batch_id
          FROM unnest(p_call_log_ids, p_statuses) WITH ORDINALITY AS r (id, status, ord)
          JOIN call_logs c ON c.id = r.id
         WHERE CASE WHEN v_problems[r.ord] IS NULL THEN is_terminal(r.status::call_status) END);
    IF v_opt_calls IS NOT NULL THEN
        v_batch_ids := v_batch_ids || v_opt_batches || dnc_batches(v_opt_tenants, v_opt_phones);
    END IF;
    PERFORM lock_batches(v_batch_ids);
    IF v_opt_calls IS NOT NULL THEN
        -- Listed before any report applies: a retry of an opted-out call's entry meets the list.
        PERFORM put_on_dnc(v_opt_tenants, v_opt_phones, 'opt_out', v_opt_calls, v_batch_ids);
    END IF;
    PERFORM FROM call_logs c WHERE c.id = ANY (p_call_log_ids) ORDER BY c.id FOR UPDATE;

    PERFORM set_reason('report_call_status');
    FOR v_round IN 1 .. coalesce(v_rounds, 0) LOOP
        -- Forward moves update the call (its trigger moves the entry on a final one); a
        -- duplicate, late or backward report changes nothing and is recorded as ignored.
        WITH this_round AS (
            SELECT c.id, c.tenant_id, c.batch_id, c.status AS from_status, r.status, r.detail,
                   call_transition_allowed(c.status, r.status) AS allowed
              FROM (SELECT r.id, coalesce(r.detail, '{}') AS detail,
                           CASE WHEN v_problems[r.ord] IS NULL THEN r.status::call_status END AS status,
                           row_number() OVER (PARTITION BY r.id ORDER BY r.ord) AS nth
                      FROM unnest(p_call_log_ids, p_statuses, p_details) WITH ORDINALITY AS r (id, status, detail, ord)
                     WHERE v_problems[r.ord] IS NULL
                   ) r
              JOIN call_logs c ON c.id = r.id
             WHERE r.nth = v_round
        ), ignored AS (
            INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason, ignored)
            SELECT t.tenant_id, t.batch_id, 'call', t.id, t.from_status, t.status,
                   format('report_call_status: %s after %s ignored', t.status, t.from_status), true
              FROM this_round t
             WHERE NOT t.allowed
        )
        UPDATE call_logs c
           SET status = t.status, detail = c.detail || t.detail
          FROM this_round t
         WHERE c.id = t.id AND c.tenant_id = t.tenant_id AND t.allowed;
    END LOOP;

    RETURN QUERY
    SELECT r.id, e.status::text,
           coalesce(v_problems[r.ord], CASE WHEN c.id IS NULL THEN 'call log not found' END)
      FROM unnest(p_call_log_ids) WITH ORDINALITY AS r (id, ord)
      LEFT JOIN call_logs c ON c.id = r.id
      LEFT JOIN batch_entries e ON e.id = c.entry_id AND e.tenant_id = c.tenant_id
     ORDER BY r.ord;
END
$$;

-- The voice worker's call. Forward moves update the call; a terminal status moves the entry in
-- the same transaction (trigger). A duplicate, late or backward report changes nothing and is
-- recorded as an ignored event: workers and webhooks may deliver out of order and retry.
-- Returns the entry's status after. "opt_out": true in the detail (whatever the status, and
-- even when the status itself is ignored) puts the call's number on its tenant's do-not-call
-- list and ends its other entries (put_on_dnc, sql/040); the call goes on to its own end.
-- report_call_statuses does the same for many; like mark_dispatched, this one-report form is
-- the voice workers' hot path and keeps its own short body (a wrapper measured 60–90% slower
-- per call).
CREATE OR REPLACE FUNCTION batchctl.report_call_status(
    p_call_log_id uuid, p_status text, p_detail jsonb DEFAULT '{}')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_problem text := call_report_problem(p_status, p_detail);
    v_status call_status;
    v_call call_logs;
    v_phone text;
    v_batch_ids uuid[];
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'p_%', v_problem USING ERRCODE = 'BC001';
    END IF;
    v_status := p_status::call_status;
    p_detail := coalesce(p_detail, '{}');

    SELECT * INTO v_call FROM call_logs WHERE id = p_call_log_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'call log % not found', p_call_log_id USING ERRCODE = 'BC002';
    END IF;
    IF p_detail -> 'opt_out' = 'true' THEN
        -- The person asked not to be called again: the number goes on the tenant's do-not-call
        -- list before the report applies (so a retry of this entry meets it), and its other
        -- entries end (sql/040). Their batches and this call's are locked at once.
        SELECT to_phone INTO v_phone FROM batch_entries WHERE id = v_call.entry_id AND tenant_id = v_call.tenant_id;
        v_batch_ids := dnc_batches(ARRAY[v_call.tenant_id], ARRAY[v_phone]) || v_call.batch_id;
        PERFORM lock_tenant_batches(v_call.tenant_id, v_batch_ids);
        IF v_phone IS NOT NULL THEN  -- (else pruned: not found below)
            PERFORM put_on_dnc(ARRAY[v_call.tenant_id], ARRAY[v_phone], 'opt_out', ARRAY[v_call.id], v_batch_ids);
        END IF;
    ELSIF is_terminal(v_status) THEN
        -- its entry and counters will change
        PERFORM lock_tenant_batches(v_call.tenant_id, ARRAY[v_call.batch_id]);
    END IF;
    SELECT * INTO v_call FROM call_logs WHERE id = p_call_log_id AND tenant_id = v_call.tenant_id FOR UPDATE;
    IF NOT FOUND THEN  -- pruned (sql/065) while we waited for the lock
        RAISE EXCEPTION 'call log % not found', p_call_log_id USING ERRCODE = 'BC002';
    END IF;

    IF call_transition_allowed(v_call.status, v_status) THEN
        PERFORM set_reason('report_call_status');
        UPDATE call_logs SET status = v_status, detail = detail || p_detail
         WHERE id = p_call_log_id AND tenant_id = v_call.tenant_id;
    ELSE
        INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason, ignored)
        VALUES (v_call.tenant_id, v_call.batch_id, 'call', v_call.id, v_call.status, v_status,
                format('report_call_status: %s after %s ignored', v_status, v_call.status), true);
    END IF;
    RETURN (SELECT status FROM batch_entries WHERE id = v_call.entry_id AND tenant_id = v_call.tenant_id);
END
$$;

-- Tenants and their do-not-call lists (the tenant API, part 1).
-- Each tenant function takes p_tenant_id first and answers "not found" (BC002) for another
-- tenant's objects. SECURITY DEFINER: callers need EXECUTE only, not table rights.

CREATE OR REPLACE FUNCTION batchctl.create_tenant(
    p_name text, p_max_concurrent_calls integer DEFAULT 3, p_timezone text DEFAULT 'UTC')
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_name IS NULL OR length(btrim(p_name)) = 0 THEN
        RAISE EXCEPTION 'p_name: a tenant needs a non-empty name' USING ERRCODE = 'BC001';
    END IF;
    IF text_problem(p_name) IS NOT NULL THEN
        RAISE EXCEPTION 'p_name %', text_problem(p_name) USING ERRCODE = 'BC001';
    END IF;
    IF p_max_concurrent_calls IS NULL OR p_max_concurrent_calls < 1 THEN
        RAISE EXCEPTION 'p_max_concurrent_calls: expected an integer of at least 1, got %',
            coalesce(p_max_concurrent_calls::text, 'null') USING ERRCODE = 'BC001';
    END IF;
    IF NOT is_valid_timezone(p_timezone) THEN
        RAISE EXCEPTION 'p_timezone: %',
            zone_problem(p_timezone, (SELECT suggestion FROM timezone_verdicts(ARRAY[p_timezone])))
            USING ERRCODE = 'BC001';
    END IF;
    INSERT INTO tenants (name, max_concurrent_calls, timezone)
    VALUES (btrim(p_name), p_max_concurrent_calls, p_timezone)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- The batches holding entries of these numbers (p_tenant_ids[i]'s p_phones[i]) that may still
-- change: queued, being claimed or on a call. put_on_dnc's callers lock them first (unlocked
-- read: an entry only leaves these statuses, and a batch's entries go terminal under its lock).
-- One probe of (batch, number) per unfinished batch of the tenant: no index by number alone is
-- kept for this rare call (each would cost every entry transition a write).
CREATE OR REPLACE FUNCTION batchctl.dnc_batches(p_tenant_ids uuid[], p_phones text[])
RETURNS uuid[] LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT e.batch_id), '{}')
      FROM unnest(p_tenant_ids, p_phones) AS n (tenant_id, phone)
      JOIN batchctl.batches b ON b.tenant_id = n.tenant_id AND b.finished_at IS NULL
      JOIN batchctl.batch_entries e ON e.batch_id = b.id AND e.to_phone = n.phone AND e.tenant_id = b.tenant_id
     WHERE e.status IN ('queued', 'running', 'dispatched')
$$;

-- Puts numbers (p_tenant_ids[i]'s p_phones[i]) on their tenants' do-not-call lists and ends
-- their entries that are left, in the batches p_batch_ids. The caller has locked those
-- batches, dnc_batches' and any others it will change, in one statement (sql/020's order),
-- before calling: the list rows are written after the batch locks, so two callers racing for
-- one number meet at its batches, never hold batches while waiting for each other's list row.
-- p_source says why, and what happens to the number's entries:
--   'add_dnc'  an operator's list: queued and claimed entries end cancelled ('dnc'); a call
--              already live is left to end (cancel_entry hangs it up).
--   'opt_out'  the person asked, on the call p_call_log_ids[i]: queued and claimed entries end
--              cancelled ('opted_out'), and live calls of the number are hung up as
--              cancel_entry does (their entries end with the call, never retried), except the
--              call that carried the opt-out: it ends by its own reports, its entry records
--              opted_out_at and is never retried (the re-queue guard, sql/032, meets the list).
-- A number already listed keeps its row (listed first, for the first reason).
CREATE OR REPLACE FUNCTION batchctl.put_on_dnc(
    p_tenant_ids uuid[], p_phones text[], p_source text, p_call_log_ids uuid[], p_batch_ids uuid[])
RETURNS void LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_reason(p_source);
    INSERT INTO dnc_numbers (tenant_id, phone, source, call_log_id)
    SELECT DISTINCT ON (n.tenant_id, n.phone) n.tenant_id, n.phone, p_source, n.call_log_id
      FROM unnest(p_tenant_ids, p_phones, p_call_log_ids) WITH ORDINALITY AS n (tenant_id, phone, call_log_id, ord)
     ORDER BY n.tenant_id, n.phone, n.ord
    ON CONFLICT DO NOTHING;

    -- The opt-out calls' entries first: a terminal entry never changes.
    UPDATE batch_entries e
       SET opted_out_at = now(), updated_at = now()
      FROM call_logs c
     WHERE c.id = ANY (p_call_log_ids) AND e.id = c.entry_id AND e.tenant_id = c.tenant_id
       AND e.batch_id = ANY (p_batch_ids) AND e.opted_out_at IS NULL
       AND e.status IN ('queued', 'running', 'dispatched');

    UPDATE batch_entries e
       SET status = 'cancelled', last_error = CASE p_source WHEN 'opt_out' THEN 'opted_out' ELSE 'dnc' END,
           claimed_by = NULL, lease_expires_at = NULL, updated_at = now()
      FROM (SELECT DISTINCT tenant_id, phone FROM unnest(p_tenant_ids, p_phones) AS n (tenant_id, phone)) n
     WHERE e.batch_id = ANY (p_batch_ids) AND e.tenant_id = n.tenant_id AND e.to_phone = n.phone
       AND e.status IN ('queued', 'running');

    IF p_source = 'opt_out' THEN
        PERFORM cancel_live_entries(array_agg(e.tenant_id), array_agg(e.id), 'opted_out')
           FROM batch_entries e
           JOIN (SELECT DISTINCT tenant_id, phone FROM unnest(p_tenant_ids, p_phones) AS n (tenant_id, phone)) n
             ON e.tenant_id = n.tenant_id AND e.to_phone = n.phone
          WHERE e.batch_id = ANY (p_batch_ids) AND e.status = 'dispatched'
            AND NOT coalesce(e.call_log_id = ANY (p_call_log_ids), false)
         HAVING count(*) > 0;
    END IF;
END
$$;

-- Adds a number to the do-not-call list and cancels its entries that are not yet dialling.
-- A call already live is left to end (hang it up with cancel_entry if needed).
CREATE OR REPLACE FUNCTION batchctl.add_dnc(p_tenant_id uuid, p_phone text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch_ids uuid[];
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF NOT coalesce(is_e164(p_phone), false) THEN
        RAISE EXCEPTION 'p_phone: % is not an E.164 number (+ country code and number, e.g. +14155550123)',
            coalesce(quote_literal(p_phone), 'null') USING ERRCODE = 'BC001';
    END IF;
    v_batch_ids := dnc_batches(ARRAY[p_tenant_id], ARRAY[p_phone]);
    PERFORM lock_tenant_batches(p_tenant_id, v_batch_ids);
    PERFORM put_on_dnc(ARRAY[p_tenant_id], ARRAY[p_phone], 'add_dnc', NULL, v_batch_ids);
END
$$;

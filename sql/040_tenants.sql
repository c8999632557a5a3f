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
    INSERT INTO dnc_numbers (tenant_id, phone) VALUES (p_tenant_id, p_phone) ON CONFLICT DO NOTHING;

    -- One probe of (batch, number) per unfinished batch of the tenant: no index by number
    -- alone is kept for this rare call (each would cost every entry transition a write).
    SELECT array_agg(e.batch_id) INTO v_batch_ids
      FROM batches b
      JOIN batch_entries e ON e.batch_id = b.id AND e.to_phone = p_phone AND e.tenant_id = b.tenant_id
     WHERE b.tenant_id = p_tenant_id AND b.finished_at IS NULL AND e.status IN ('queued', 'running');
    IF v_batch_ids IS NOT NULL THEN
        PERFORM lock_tenant_batches(p_tenant_id, v_batch_ids);
        PERFORM set_reason('add_dnc');
        UPDATE batch_entries
           SET status = 'cancelled', last_error = 'dnc', claimed_by = NULL, lease_expires_at = NULL,
               updated_at = now()
         WHERE tenant_id = p_tenant_id AND to_phone = p_phone AND batch_id = ANY (v_batch_ids)
           AND status IN ('queued', 'running');
    END IF;
END
$$;

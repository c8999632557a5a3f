-- Helpers shared by the API functions.
--
-- Error codes (stable SQLSTATEs, documented in docs/sql-api.md):
--   BC001  invalid argument (bad phone, option, status, empty list …): nothing was changed
--   BC002  not found (unknown id, or another tenant's)
--   BC003  transition not allowed by the state machine
--   BC004  the claim is gone (lease lost or entry no longer running): hang up, don't retry
--
-- Lock order, kept by every function so that concurrent callers cannot deadlock:
--   tenant (claim only) -> batches in id order -> entries -> call logs -> hang-up rows.
-- Entry and call triggers update their batch's counters, so a function locks the batch rows it
-- will touch before it changes an entry, all of them in one statement (lock_batches): taking
-- them in two steps can hold a higher batch while waiting for a lower one (sweep(), sql/060).

-- The reason recorded in events for the transitions the current statement makes.
CREATE OR REPLACE FUNCTION batchctl.set_reason(p_reason text)
RETURNS void LANGUAGE sql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT set_config('batchctl.reason', coalesce(p_reason, ''), true) $$;

-- (A SQL-standard body without SET, like the rules in sql/010: inlined into every event insert.)
CREATE OR REPLACE FUNCTION batchctl.current_reason()
RETURNS text LANGUAGE sql STABLE
RETURN coalesce(nullif(pg_catalog.current_setting('batchctl.reason', true), ''), 'direct update');

CREATE OR REPLACE FUNCTION batchctl.lock_batches(p_batch_ids uuid[])
RETURNS void LANGUAGE sql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM (
        SELECT 1 FROM batchctl.batches WHERE id = ANY (p_batch_ids) ORDER BY id FOR NO KEY UPDATE
    ) locked
$$;

-- The same for batches of one tenant, named with it: on a database distributed by tenant
-- (docs/scale-out.md) this lock goes to the tenant's shard only, where lock_batches' would have to
-- visit every shard.
CREATE OR REPLACE FUNCTION batchctl.lock_tenant_batches(p_tenant_id uuid, p_batch_ids uuid[])
RETURNS void LANGUAGE sql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM (
        SELECT 1 FROM batchctl.batches
         WHERE tenant_id = p_tenant_id AND id = ANY (p_batch_ids)
         ORDER BY id FOR NO KEY UPDATE
    ) locked
$$;

-- The set forms (mark_dispatched_many, report_call_statuses) take parallel arrays: BC001 unless
-- each has one element per key (the optional one may be null).
CREATE OR REPLACE FUNCTION batchctl.check_parallel_arrays(
    p_names text, p_key text, p_keys integer, p_required integer, p_optional integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_required IS DISTINCT FROM p_keys OR p_optional <> p_keys THEN
        RAISE EXCEPTION '%: expected one per % (%), got % and %', p_names, p_key, coalesce(p_keys, 0),
            coalesce(p_required, 0), coalesce(p_optional::text, 'none') USING ERRCODE = 'BC001';
    END IF;
END
$$;

-- The tenant's batch, locked; "not found" for a missing id or another tenant's batch.
CREATE OR REPLACE FUNCTION batchctl.lock_tenant_batch(p_tenant_id uuid, p_batch_id uuid)
RETURNS batchctl.batches LANGUAGE plpgsql VOLATILE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch batchctl.batches;
BEGIN
    PERFORM batchctl.check_tenant(p_tenant_id);
    SELECT * INTO v_batch FROM batchctl.batches
     WHERE id = p_batch_id AND tenant_id = p_tenant_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % not found', p_batch_id USING ERRCODE = 'BC002';
    END IF;
    RETURN v_batch;
END
$$;

-- The arguments every claim of a worker's takes (claim_entries, claim_webhook_deliveries): BC001
-- naming a missing or bad one.
CREATE OR REPLACE FUNCTION batchctl.check_claim(p_worker text, p_limit integer, p_lease_seconds integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_worker IS NULL OR length(p_worker) = 0 OR text_problem(p_worker) IS NOT NULL THEN
        RAISE EXCEPTION 'p_worker: name the claiming worker (e.g. host:pid)%',
            coalesce('; it ' || text_problem(p_worker), '') USING ERRCODE = 'BC001';
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'p_limit: expected 1 to 10000, got %', p_limit USING ERRCODE = 'BC001';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 THEN
        RAISE EXCEPTION 'p_lease_seconds: expected at least 1, got %', p_lease_seconds USING ERRCODE = 'BC001';
    END IF;
END
$$;

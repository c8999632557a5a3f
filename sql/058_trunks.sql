-- SIP trunks and their caller-ID pools (the tenant API, docs/trunks.md). Each tenant function
-- takes p_tenant_id first and answers "not found" (BC002) for another tenant's objects.
-- SECURITY DEFINER: callers need EXECUTE only.

-- What is wrong with a trunk's settings (a key of create_trunk or update_trunk), said after its
-- name, or null. A name is what people type: 1 to 63 letters, digits, spaces, dots, hyphens and
-- underscores, starting with a letter or digit; max_cps a number of calls per second from 0.001
-- to 1000 (0.5: one call every 2 s); max_concurrent null (no cap of its own) or at least 1.
CREATE OR REPLACE FUNCTION batchctl.trunk_problem(
    p_name text, p_livekit_trunk_id text, p_max_cps numeric, p_max_concurrent integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_name IS NULL OR NOT p_name OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$'
        THEN pg_catalog.format('name %s: expected 1 to 63 letters, digits, spaces, ".", "-" or "_", starting with a letter or digit',
                               coalesce(pg_catalog.to_jsonb(batchctl.excerpt(p_name))::text, 'null'))
    WHEN p_livekit_trunk_id IS NULL
         OR NOT p_livekit_trunk_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{1,200}$'
        THEN pg_catalog.format('livekit_trunk_id %s: expected a LiveKit SIP trunk id such as ST_xxxx (letters, digits, "_", "-")',
                               coalesce(pg_catalog.to_jsonb(batchctl.excerpt(p_livekit_trunk_id))::text, 'null'))
    WHEN p_max_cps IS NULL OR p_max_cps OPERATOR(pg_catalog.<) 0.001 OR p_max_cps OPERATOR(pg_catalog.>) 1000
        THEN pg_catalog.format('max_cps: expected calls per second from 0.001 to 1000, got %s',
                               coalesce(p_max_cps::text, 'null'))
    WHEN p_max_concurrent OPERATOR(pg_catalog.<) 1
        THEN pg_catalog.format('max_concurrent: expected null (no cap of its own) or at least 1, got %s',
                               p_max_concurrent)
END;

-- The tenant's trunk p_trunk_id, locked for the change the caller makes; BC002 when it has none.
CREATE OR REPLACE FUNCTION batchctl.lock_trunk(p_tenant_id uuid, p_trunk_id uuid)
RETURNS batchctl.trunks LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_trunk trunks;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    SELECT * INTO v_trunk FROM trunks WHERE tenant_id = p_tenant_id AND id = p_trunk_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trunk % not found', p_trunk_id USING ERRCODE = 'BC002';
    END IF;
    RETURN v_trunk;
END
$$;

-- The id of the tenant's trunk named p_ref (its name, or its id as text); BC001 naming the
-- tenant's trunks otherwise (the batch option trunk).
CREATE OR REPLACE FUNCTION batchctl.trunk_ref(p_tenant_id uuid, p_ref text)
RETURNS uuid LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT t.id INTO v_id FROM trunks t
     WHERE t.tenant_id = p_tenant_id AND (t.name = p_ref OR t.id::text = lower(p_ref));
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'option trunk: the tenant has no trunk %; its trunks: %', to_jsonb(excerpt(p_ref)),
            coalesce((SELECT string_agg(t.name, ', ' ORDER BY t.created_at, t.id) FROM trunks t
                       WHERE t.tenant_id = p_tenant_id), 'none')
            USING ERRCODE = 'BC001';
    END IF;
    RETURN v_id;
END
$$;

-- A new trunk of the tenant. Its first is its default (docs/trunks.md). BC001 for a bad setting
-- or a name the tenant already uses.
CREATE OR REPLACE FUNCTION batchctl.create_trunk(
    p_tenant_id uuid, p_name text, p_livekit_trunk_id text, p_max_cps numeric,
    p_max_concurrent integer DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF trunk_problem(p_name, p_livekit_trunk_id, p_max_cps, p_max_concurrent) IS NOT NULL THEN
        RAISE EXCEPTION 'trunk %', trunk_problem(p_name, p_livekit_trunk_id, p_max_cps, p_max_concurrent)
            USING ERRCODE = 'BC001';
    END IF;
    INSERT INTO trunks (tenant_id, name, livekit_trunk_id, max_cps, max_concurrent)
    VALUES (p_tenant_id, p_name, p_livekit_trunk_id, p_max_cps, p_max_concurrent)
    ON CONFLICT (tenant_id, name) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'trunk name %: the tenant has a trunk of that name', to_jsonb(p_name)
            USING ERRCODE = 'BC001';
    END IF;
    RETURN v_id;
END
$$;

-- Changes some of a trunk's settings: p_changes is an object of name, livekit_trunk_id, max_cps
-- and max_concurrent (null: no cap of its own); keys left out keep their value. Checked like
-- create_trunk's (BC001 naming the key; nothing changes). Returns trunk_status.
CREATE OR REPLACE FUNCTION batchctl.update_trunk(p_tenant_id uuid, p_trunk_id uuid, p_changes jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_trunk trunks := lock_trunk(p_tenant_id, p_trunk_id);
    v_unknown text;
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION 'p_changes: expected an object of name, livekit_trunk_id, max_cps, max_concurrent, got %',
            coalesce(jsonb_typeof(p_changes), 'null') USING ERRCODE = 'BC001';
    END IF;
    SELECT string_agg(format('"%s"', k), ', ') INTO v_unknown FROM jsonb_object_keys(p_changes) k
     WHERE k NOT IN ('name', 'livekit_trunk_id', 'max_cps', 'max_concurrent');
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'p_changes: unknown key % (allowed: name, livekit_trunk_id, max_cps, max_concurrent)',
            v_unknown USING ERRCODE = 'BC001';
    END IF;
    IF EXISTS (SELECT FROM jsonb_each(p_changes) c
                WHERE (c.key IN ('name', 'livekit_trunk_id') AND jsonb_typeof(c.value) <> 'string')
                   OR (c.key = 'max_cps' AND jsonb_typeof(c.value) <> 'number')
                   OR (c.key = 'max_concurrent' AND jsonb_typeof(c.value) NOT IN ('number', 'null'))
                   OR (c.key = 'max_concurrent' AND jsonb_typeof(c.value) = 'number'
                       AND c.value::text !~ '^-?[0-9]{1,9}$')) THEN
        RAISE EXCEPTION 'p_changes: name and livekit_trunk_id are strings, max_cps a number, max_concurrent an integer or null; got %',
            excerpt(p_changes::text) USING ERRCODE = 'BC001';
    END IF;
    v_trunk.name := coalesce(p_changes ->> 'name', v_trunk.name);
    v_trunk.livekit_trunk_id := coalesce(p_changes ->> 'livekit_trunk_id', v_trunk.livekit_trunk_id);
    v_trunk.max_cps := coalesce((p_changes ->> 'max_cps')::numeric, v_trunk.max_cps);
    IF p_changes ? 'max_concurrent' THEN
        v_trunk.max_concurrent := (p_changes ->> 'max_concurrent')::integer;
    END IF;
    IF trunk_problem(v_trunk.name, v_trunk.livekit_trunk_id, v_trunk.max_cps, v_trunk.max_concurrent) IS NOT NULL THEN
        RAISE EXCEPTION 'trunk %', trunk_problem(v_trunk.name, v_trunk.livekit_trunk_id, v_trunk.max_cps,
                                                 v_trunk.max_concurrent) USING ERRCODE = 'BC001';
    END IF;
    BEGIN
        UPDATE trunks
           SET name = v_trunk.name, livekit_trunk_id = v_trunk.livekit_trunk_id,
               max_cps = v_trunk.max_cps, max_concurrent = v_trunk.max_concurrent, updated_at = now()
         WHERE tenant_id = p_tenant_id AND id = p_trunk_id;
    EXCEPTION WHEN unique_violation THEN  -- (a concurrent rename too: the unique key decides)
        RAISE EXCEPTION 'trunk name %: the tenant has a trunk of that name', to_jsonb(v_trunk.name)
            USING ERRCODE = 'BC001';
    END;
    RETURN trunk_status(p_tenant_id, p_trunk_id);
END
$$;

-- A trunk as it stands: its settings, whether it is the tenant's default, its calls in flight
-- (live call logs on it), the calls started on it in the last second and minute, and its
-- caller IDs with their calls today (since midnight in the tenant's zone), by the claim's
-- clock.
CREATE OR REPLACE FUNCTION batchctl.trunk_status(p_tenant_id uuid, p_trunk_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock();
    v_trunk trunks;
    v_today date;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    SELECT * INTO v_trunk FROM trunks WHERE tenant_id = p_tenant_id AND id = p_trunk_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trunk % not found', p_trunk_id USING ERRCODE = 'BC002';
    END IF;
    SELECT (v_now AT TIME ZONE t.timezone)::date INTO v_today FROM tenants t WHERE t.id = p_tenant_id;
    RETURN jsonb_build_object(
        'trunk_id', v_trunk.id, 'name', v_trunk.name, 'livekit_trunk_id', v_trunk.livekit_trunk_id,
        'max_cps', v_trunk.max_cps, 'max_concurrent', v_trunk.max_concurrent,
        'default', call_trunk(p_tenant_id, '{}') = v_trunk.id,
        'in_flight', trunk_in_flight(v_trunk.id),  -- as max_concurrent counts them (sql/051)
        'started_last_second', (SELECT count(*) FROM call_logs c
                                 WHERE c.trunk_id = p_trunk_id AND c.tenant_id = p_tenant_id
                                   AND c.started_at > v_now - interval '1 second'
                                   AND c.started_at <= v_now),
        'started_last_minute', (SELECT count(*) FROM call_logs c
                                 WHERE c.trunk_id = p_trunk_id AND c.tenant_id = p_tenant_id
                                   AND c.started_at > v_now - interval '1 minute'
                                   AND c.started_at <= v_now),
        'caller_ids', coalesce((
            SELECT jsonb_agg(jsonb_build_object('number', n.phone, 'daily_cap', n.daily_cap,
                                                'country', n.country, 'today', coalesce(u.calls, 0))
                             ORDER BY n.phone)
              FROM caller_ids n
              -- The day's calls as the daily caps count them (sql/051), in the tenant's zone.
              LEFT JOIN caller_id_days u
                ON u.tenant_id = n.tenant_id AND u.phone = n.phone AND u.day = v_today
             WHERE n.tenant_id = p_tenant_id AND n.trunk_id = p_trunk_id), '[]'),
        'backoff', jsonb_build_object('refusals', v_trunk.refusals, 'until', v_trunk.backoff_until,
                                      'active', coalesce(v_trunk.backoff_until > v_now, false)),
        'next_start_at', v_trunk.next_start_at,
        'created_at', v_trunk.created_at, 'updated_at', v_trunk.updated_at);
END
$$;

-- Adds caller IDs to the trunk's pool, each with p_daily_cap (null: none). Every number is
-- checked first (E.164; BC001 naming p_numbers[i], nothing added); one the pool has already
-- is left as it is. At most 10000 a call. Returns how many were added.
CREATE OR REPLACE FUNCTION batchctl.add_caller_ids(
    p_tenant_id uuid, p_trunk_id uuid, p_numbers text[], p_daily_cap integer DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_trunk trunks := lock_trunk(p_tenant_id, p_trunk_id);
    v_bad text;
    v_added integer;
BEGIN
    IF coalesce(cardinality(p_numbers), 0) = 0 OR cardinality(p_numbers) > 10000 THEN
        RAISE EXCEPTION 'p_numbers: expected 1 to 10000 numbers, got %', coalesce(cardinality(p_numbers), 0)
            USING ERRCODE = 'BC001';
    END IF;
    IF p_daily_cap < 1 THEN
        RAISE EXCEPTION 'p_daily_cap: expected null (no cap) or at least 1, got %', p_daily_cap
            USING ERRCODE = 'BC001';
    END IF;
    SELECT string_agg(format('p_numbers[%s] %s', ord,
                             coalesce(to_jsonb(excerpt(n))::text, 'null')), '; ' ORDER BY ord)
      INTO v_bad
      FROM unnest(p_numbers) WITH ORDINALITY AS x (n, ord)
     WHERE NOT coalesce(is_e164(n), false);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '% not an E.164 number (+ country code and number, e.g. +14155550123)',
            v_bad USING ERRCODE = 'BC001';
    END IF;
    INSERT INTO caller_ids (tenant_id, trunk_id, phone, daily_cap, country, local_prefix)
    SELECT p_tenant_id, v_trunk.id, n.phone, p_daily_cap, place.country, place.prefix
      FROM (SELECT DISTINCT x.n AS phone FROM unnest(p_numbers) x (n)) n
      LEFT JOIN LATERAL (
          SELECT p.country, p.prefix FROM phone_prefixes p
           WHERE p.prefix IN (substr(n.phone, 2, 1), substr(n.phone, 2, 2),
                              substr(n.phone, 2, 3), substr(n.phone, 2, 4))
           ORDER BY length(p.prefix) DESC
           LIMIT 1
      ) place ON true
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END
$$;

-- Takes numbers out of the trunk's pool (one it does not have is ignored). Returns how many.
CREATE OR REPLACE FUNCTION batchctl.remove_caller_ids(
    p_tenant_id uuid, p_trunk_id uuid, p_numbers text[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_trunk trunks := lock_trunk(p_tenant_id, p_trunk_id);
    v_removed integer;
BEGIN
    IF cardinality(p_numbers) > 10000 THEN
        RAISE EXCEPTION 'p_numbers: at most 10000 numbers, got %', cardinality(p_numbers)
            USING ERRCODE = 'BC001';
    END IF;
    DELETE FROM caller_ids
     WHERE tenant_id = p_tenant_id AND trunk_id = v_trunk.id AND phone = ANY (p_numbers);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    RETURN v_removed;
END
$$;

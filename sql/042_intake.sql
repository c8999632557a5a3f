-- Entry intake (the tenant API, part 2): batches made from leads, and leads added to them,
-- every row checked by one function (entry_problem) before anything is written.
-- Each tenant function takes p_tenant_id first and answers "not found" (BC002) for another
-- tenant's objects. SECURITY DEFINER: callers need EXECUTE only, not table rights.

-- Validates everything before writing anything: an invalid entry or option raises BC001 naming
-- each offending entry (entries[i], 0-based) and creates nothing. Duplicate numbers keep their
-- first entry; do-not-call numbers are skipped; both are counted in batch_status.
CREATE OR REPLACE FUNCTION batchctl.create_batch(
    p_tenant_id uuid, p_entries jsonb, p_options jsonb DEFAULT '{}', p_created_by uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_errors text[];
    v_rows integer;
    v_require_consent boolean;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    v_require_consent := consent_required(p_tenant_id);
    -- A bad option is reported before bad entries, as create_batch_from_rows does.
    PERFORM normalize_options(p_options);
    IF p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RAISE EXCEPTION 'p_entries: expected a JSON array of {to_phone, lead_name?, lead_id?, context?, timezone?, region?, consent_at?, consent_source?}, got %',
            coalesce(jsonb_typeof(p_entries), 'null') USING ERRCODE = 'BC001';
    END IF;
    v_rows := jsonb_array_length(p_entries);

    -- Every problem of every entry: the JSON shapes, then entry_problem, the check add_entries
    -- makes of every row (again, when create_batch_from_rows calls it: it costs little beside
    -- this, and it refuses an empty list).
    WITH input AS (
        SELECT ord - 1 AS idx, e FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS x (e, ord)
    ), problems AS (
        SELECT idx, CASE
            WHEN jsonb_typeof(e) <> 'object'
                THEN 'expected an object {to_phone, lead_name?, lead_id?, context?, timezone?, region?, consent_at?, consent_source?}'
            WHEN k.unknown IS NOT NULL
                THEN format('unknown key "%s" (allowed: to_phone, lead_name, lead_id, context, timezone, region, consent_at, consent_source)', k.unknown)
            WHEN jsonb_typeof(e -> 'to_phone') IS DISTINCT FROM 'string'
                THEN 'to_phone is missing or not a string'
            WHEN coalesce(jsonb_typeof(e -> 'lead_name'), 'null') NOT IN ('string', 'null')
                THEN 'lead_name must be a string'
            WHEN coalesce(jsonb_typeof(e -> 'lead_id'), 'null') NOT IN ('string', 'number', 'null')
                THEN 'lead_id must be a string or a number'
            WHEN coalesce(jsonb_typeof(e -> 'context'), 'null') NOT IN ('object', 'null')
                THEN 'context must be a JSON object'
            WHEN coalesce(jsonb_typeof(e -> 'timezone'), 'null') NOT IN ('string', 'null')
                THEN 'timezone must be a string such as "Europe/Berlin"'
            WHEN coalesce(jsonb_typeof(e -> 'region'), 'null') NOT IN ('string', 'null')
                THEN 'region must be a string such as "US-FL"'
            WHEN coalesce(jsonb_typeof(e -> 'consent_at'), 'null') NOT IN ('string', 'null')
                THEN 'consent_at must be a string such as "2026-11-23T09:00:00Z"'
            WHEN coalesce(jsonb_typeof(e -> 'consent_source'), 'null') NOT IN ('string', 'null')
                THEN 'consent_source must be a string'
            -- (A function call: only for the rows that give a consent.)
            WHEN e ->> 'consent_at' IS NOT NULL AND timestamp_problem(e ->> 'consent_at') IS NOT NULL
                THEN format('consent_at %s %s', to_jsonb(excerpt(e ->> 'consent_at')),
                            timestamp_problem(e ->> 'consent_at'))
            ELSE entry_problem(e ->> 'to_phone', e ->> 'lead_name', e ->> 'lead_id', e -> 'context',
                               e ->> 'timezone', tz.valid, tz.suggestion, e ->> 'region',
                               (e ->> 'consent_at')::timestamptz, e ->> 'consent_source',
                               v_require_consent)
            END AS problem
          FROM input
          LEFT JOIN LATERAL (
              SELECT min(key) AS unknown FROM jsonb_object_keys(CASE WHEN jsonb_typeof(e) = 'object' THEN e ELSE '{}' END) key
               WHERE key NOT IN ('to_phone', 'lead_name', 'lead_id', 'context', 'timezone', 'region',
                                 'consent_at', 'consent_source')
          ) k ON true
          -- The distinct zones, checked in one read of pg_timezone_names.
          LEFT JOIN (
              SELECT z.tz, z.valid, z.suggestion
                FROM timezone_verdicts(ARRAY(SELECT DISTINCT e ->> 'timezone' FROM input
                       WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'timezone') = 'string')) z
          ) tz ON jsonb_typeof(e) = 'object' AND tz.tz = e ->> 'timezone'
    )
    SELECT array_agg(format('entries[%s]: %s', idx, problem) ORDER BY idx) INTO v_errors
      FROM problems WHERE problem IS NOT NULL;
    PERFORM raise_entry_errors(v_errors, v_rows);

    RETURN create_batch_from_rows(p_tenant_id, ARRAY(
        SELECT ROW(e ->> 'to_phone', e ->> 'lead_name', e ->> 'lead_id',
                   nullif(e -> 'context', 'null'), e ->> 'timezone', e ->> 'region',
                   (e ->> 'consent_at')::timestamptz, e ->> 'consent_source')::new_entry
          FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS x (e, ord)
         ORDER BY ord), p_options, p_created_by);
END
$$;

-- What is wrong with one new entry, or null: the check of every row, by add_entries and by
-- create_batch (after the JSON shapes). p_zone_valid / p_zone_suggestion: timezone_verdicts'
-- answer for its zone, read once per call for all rows. p_region: the lead's ISO 3166-2 code
-- (region_problem). p_consent_at / p_consent_source: the lead's consent evidence, required
-- when the tenant's policy says require_consent (p_require_consent); a consent given more
-- than five minutes in the future (clocks differ a little) is a mistake. (A SQL-standard body
-- without SET: it is inlined into the statement that checks every row, as is_e164 and the
-- bounds of sql/022.)
CREATE OR REPLACE FUNCTION batchctl.entry_problem(
    p_to_phone text, p_lead_name text, p_lead_id text, p_context jsonb, p_timezone text,
    p_zone_valid boolean, p_zone_suggestion text, p_region text, p_consent_at timestamptz,
    p_consent_source text, p_require_consent boolean)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN NOT coalesce(batchctl.is_e164(p_to_phone), false)
        THEN pg_catalog.format('to_phone %s is not an E.164 number (+ country code and number, e.g. +14155550123)',
                               coalesce(pg_catalog.to_jsonb(batchctl.excerpt(p_to_phone))::text, 'null'))
    WHEN batchctl.text_problem(p_lead_name) IS NOT NULL
        THEN 'lead_name ' || batchctl.text_problem(p_lead_name)
    WHEN batchctl.text_problem(p_lead_id) IS NOT NULL
        THEN 'lead_id ' || batchctl.text_problem(p_lead_id)
    WHEN p_context IS NOT NULL AND pg_catalog.jsonb_typeof(p_context) <> 'object'
        THEN 'context must be a JSON object'
    WHEN batchctl.json_problem(p_context, batchctl.max_context_bytes()) IS NOT NULL
        THEN 'context ' || batchctl.json_problem(p_context, batchctl.max_context_bytes())
    WHEN p_timezone IS NOT NULL AND NOT coalesce(p_zone_valid, false)
        THEN 'timezone: ' || batchctl.zone_problem(p_timezone, p_zone_suggestion)
    WHEN batchctl.region_problem(p_region) IS NOT NULL
        THEN batchctl.region_problem(p_region)
    WHEN p_require_consent AND p_consent_at IS NULL
        THEN 'consent_at is missing: the tenant''s policy requires consent evidence for every entry (require_consent)'
    WHEN p_consent_at > pg_catalog.now() + interval '5 minutes'
        THEN pg_catalog.format('consent_at %s is in the future', p_consent_at)
    WHEN batchctl.text_problem(p_consent_source) IS NOT NULL
        THEN 'consent_source ' || batchctl.text_problem(p_consent_source)
END;

-- Whether the tenant's policy requires consent evidence with every entry (sql/029).
CREATE OR REPLACE FUNCTION batchctl.consent_required(p_tenant_id uuid)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT (effective_policy(t.policy) ->> 'require_consent')::boolean
                       FROM tenants t WHERE t.id = p_tenant_id), false)
$$;

-- BC001 listing the bad entries (the first ten in the message, up to 1000 in DETAIL), if any.
CREATE OR REPLACE FUNCTION batchctl.raise_entry_errors(p_errors text[], p_rows integer)
RETURNS void LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_errors IS NOT NULL THEN
        RAISE EXCEPTION '% of % entries are invalid, nothing was created: %', cardinality(p_errors), p_rows,
            array_to_string(p_errors[1:10], '; ')
            || CASE WHEN cardinality(p_errors) > 10 THEN format('; … and %s more', cardinality(p_errors) - 10) ELSE '' END
            USING ERRCODE = 'BC001', DETAIL = array_to_string(p_errors[1:1000], E'\n');
    END IF;
END
$$;

-- create_batch with the entries as rows rather than a JSON document: the same checks (a number
-- in E.164, a known zone, a context object), errors, duplicates and do-not-call rules. The CLI
-- hands its staged CSV rows over this way, and so may any service that has rows already.
CREATE OR REPLACE FUNCTION batchctl.create_batch_from_rows(
    p_tenant_id uuid, p_entries batchctl.new_entry[], p_options jsonb DEFAULT '{}',
    p_created_by uuid DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_options jsonb;
    v_batch_id uuid;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    v_options := normalize_options(p_options);
    IF v_options ->> 'trunk' IS NOT NULL THEN  -- kept as the trunk's id: a rename changes nothing
        v_options := jsonb_set(v_options, '{trunk}', to_jsonb(trunk_ref(p_tenant_id, v_options ->> 'trunk')));
    END IF;
    PERFORM set_reason('create_batch');
    INSERT INTO batches (tenant_id, options, created_by, metadata)
    VALUES (p_tenant_id, v_options, p_created_by, v_options -> 'metadata')
    RETURNING id INTO v_batch_id;
    PERFORM add_entries(p_tenant_id, v_batch_id, p_entries);
    IF (v_options ->> 'autostart')::boolean THEN
        UPDATE batches SET status = 'running' WHERE id = v_batch_id AND tenant_id = p_tenant_id;
    END IF;
    RETURN v_batch_id;
END
$$;

-- More entries for a batch that has not finished (pending, running or paused), with
-- create_batch's checks and rules: nothing is added unless every entry is valid; a number
-- already in the batch, or earlier in p_entries, is a duplicate; a do-not-call number is
-- skipped (counted again by each call that lists it). Entry indices continue from the rows the
-- batch was given before. Returns the number of entries added. A large list can be added in
-- parts, each part one call, all in one transaction (the CLI does this while it reads a file).
CREATE OR REPLACE FUNCTION batchctl.add_entries(
    p_tenant_id uuid, p_batch_id uuid, p_entries batchctl.new_entry[])
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    -- Locked: a batch that completes or is cancelled meanwhile gets nothing added.
    v_batch batches := lock_tenant_batch(p_tenant_id, p_batch_id);
    v_given integer := v_batch.total + v_batch.duplicates + v_batch.dnc_skipped;
    v_errors text[];
    v_rows integer := coalesce(cardinality(p_entries), 0);
    v_new integer;  -- distinct numbers not in the batch yet
    v_inserted integer;
    v_require_consent constant boolean := consent_required(p_tenant_id);
BEGIN
    IF is_terminal(v_batch.status) THEN
        RAISE EXCEPTION 'batch % is %; entries can only be added to a pending, running or paused batch',
            p_batch_id, v_batch.status USING ERRCODE = 'BC003';
    END IF;
    IF v_rows = 0 THEN
        RAISE EXCEPTION 'p_entries: the list is empty; a batch needs at least one entry'
            USING ERRCODE = 'BC001';
    END IF;

    WITH problems AS (
        SELECT x.ord - 1 AS idx,
               entry_problem(x.to_phone, x.lead_name, x.lead_id, x.context, x.timezone, tz.valid,
                             tz.suggestion, x.region, x.consent_at, x.consent_source,
                             v_require_consent) AS problem
          FROM unnest(p_entries) WITH ORDINALITY
               AS x (to_phone, lead_name, lead_id, context, timezone, region, consent_at,
                     consent_source, ord)
          -- The distinct zones, checked in one read of pg_timezone_names.
          LEFT JOIN (SELECT z.tz, z.valid, z.suggestion
                       FROM timezone_verdicts(ARRAY(SELECT DISTINCT u.timezone FROM unnest(p_entries) u)) z) tz
                 ON tz.tz = x.timezone
    )
    SELECT array_agg(format('entries[%s]: %s', idx, problem) ORDER BY idx) INTO v_errors
      FROM problems WHERE problem IS NOT NULL;
    PERFORM raise_entry_errors(v_errors, v_rows);

    -- (No set_reason: inserted entries write no events, and the counter update below changes
    -- no status.)
    WITH firsts AS (
        SELECT DISTINCT ON (x.to_phone) x.*
          FROM unnest(p_entries) WITH ORDINALITY
               AS x (to_phone, lead_name, lead_id, context, timezone, region, consent_at,
                     consent_source, ord)
         ORDER BY x.to_phone, x.ord
    ), fresh AS (
        -- (A batch given nothing yet has nothing to compare with: no probe per entry.)
        SELECT f.* FROM firsts f
         WHERE v_given = 0
            OR NOT EXISTS (SELECT 1 FROM batch_entries e
                            WHERE e.batch_id = p_batch_id AND e.to_phone = f.to_phone
                              AND e.tenant_id = p_tenant_id)
    ), added AS (
        INSERT INTO batch_entries (batch_id, tenant_id, entry_index, to_phone, lead_id, lead_name,
                                   context, timezone, region, country, subdivisions, jurisdictions,
                                   consent_at, consent_source)
        SELECT p_batch_id, p_tenant_id, v_given + f.ord - 1, f.to_phone, f.lead_id, f.lead_name,
               coalesce(f.context, '{}'), f.timezone, upper(f.region), place.country,
               where_.subdivisions, entry_jurisdictions(place.country, where_.subdivisions),
               f.consent_at, f.consent_source
          FROM fresh f
          -- The number's jurisdiction (docs/compliance.md): the longest of its prefixes in
          -- phone_prefixes (a calling code, or 1 + a North American area code).
          LEFT JOIN LATERAL (
              SELECT p.country, p.subdivision FROM phone_prefixes p
               WHERE p.prefix IN (substr(f.to_phone, 2, 1), substr(f.to_phone, 2, 2),
                                  substr(f.to_phone, 2, 3), substr(f.to_phone, 2, 4))
               ORDER BY length(p.prefix) DESC
               LIMIT 1
          ) place ON true
         CROSS JOIN LATERAL (
             SELECT ARRAY(SELECT DISTINCT s FROM unnest(ARRAY[place.subdivision, upper(f.region)]) s
                           WHERE s IS NOT NULL ORDER BY s) AS subdivisions
         ) where_
         WHERE NOT EXISTS (SELECT 1 FROM dnc_numbers d WHERE d.tenant_id = p_tenant_id AND d.phone = f.to_phone)
         ORDER BY f.ord
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM added) INTO v_new, v_inserted;

    UPDATE batches
       SET duplicates = duplicates + v_rows - v_new,
           dnc_skipped = dnc_skipped + v_new - v_inserted
     WHERE id = p_batch_id AND tenant_id = p_tenant_id;
    IF v_batch.status = 'running' AND v_inserted > 0 THEN
        -- New work in a running batch: wake the dispatcher (a start notifies on its own).
        PERFORM pg_notify('batchctl_dispatch',
                          json_build_object('tenant_id', p_tenant_id, 'batch_id', p_batch_id)::text);
    END IF;
    RETURN v_inserted;
END
$$;

-- Records the lead rows a caller left out of a batch at intake (the CLI's --skip-invalid), for
-- the report's Compliance sheet: p_refusals, a JSON array of {"line": n, "to_phone": "…",
-- "problem": "…"} (line and to_phone may be null; to_phone as given, shortened like an error
-- message's excerpt). Call it in the transaction that creates the batch. At most 100000 rows;
-- BC001 names a malformed one and records nothing. Returns how many were recorded.
CREATE OR REPLACE FUNCTION batchctl.record_intake_refusals(
    p_tenant_id uuid, p_batch_id uuid, p_refusals jsonb)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch batches := lock_tenant_batch(p_tenant_id, p_batch_id);
    v_bad text;
    v_count integer;
BEGIN
    IF p_refusals IS NULL OR jsonb_typeof(p_refusals) <> 'array' THEN
        RAISE EXCEPTION 'p_refusals: expected a JSON array of {line, to_phone, problem}, got %',
            coalesce(jsonb_typeof(p_refusals), 'null') USING ERRCODE = 'BC001';
    END IF;
    IF jsonb_array_length(p_refusals) > 100000 THEN
        RAISE EXCEPTION 'p_refusals: % rows, more than the 100000 allowed', jsonb_array_length(p_refusals)
            USING ERRCODE = 'BC001';
    END IF;
    SELECT format('p_refusals[%s]: %s', ord - 1, CASE
               WHEN jsonb_typeof(r) <> 'object'
                    OR EXISTS (SELECT FROM jsonb_object_keys(r) k WHERE k NOT IN ('line', 'to_phone', 'problem'))
                   THEN 'expected an object {line, to_phone, problem}'
               WHEN coalesce(jsonb_typeof(r -> 'line'), 'null') NOT IN ('number', 'null')
                    OR (r ->> 'line') !~ '^[0-9]{1,9}$'
                   THEN 'line must be a line number'
               WHEN coalesce(jsonb_typeof(r -> 'to_phone'), 'null') NOT IN ('string', 'null')
                   THEN 'to_phone must be a string'
               WHEN jsonb_typeof(r -> 'problem') IS DISTINCT FROM 'string' OR btrim(r ->> 'problem') = ''
                   THEN 'problem must be a non-empty string'
               ELSE 'problem ' || text_problem(r ->> 'problem') END)
      INTO v_bad
      FROM jsonb_array_elements(p_refusals) WITH ORDINALITY AS x (r, ord)
     WHERE jsonb_typeof(r) <> 'object'
        OR EXISTS (SELECT FROM jsonb_object_keys(r) k WHERE k NOT IN ('line', 'to_phone', 'problem'))
        OR coalesce(jsonb_typeof(r -> 'line'), 'null') NOT IN ('number', 'null')
        OR (r ->> 'line') !~ '^[0-9]{1,9}$'
        OR coalesce(jsonb_typeof(r -> 'to_phone'), 'null') NOT IN ('string', 'null')
        OR jsonb_typeof(r -> 'problem') IS DISTINCT FROM 'string' OR btrim(r ->> 'problem') = ''
        OR text_problem(r ->> 'problem') IS NOT NULL
     ORDER BY ord LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION '%', v_bad USING ERRCODE = 'BC001';
    END IF;
    INSERT INTO intake_refusals (tenant_id, batch_id, line, to_phone, problem)
    SELECT p_tenant_id, v_batch.id, (r ->> 'line')::integer, excerpt(r ->> 'to_phone'), r ->> 'problem'
      FROM jsonb_array_elements(p_refusals) r;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

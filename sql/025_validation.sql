-- Input validation: options, phone numbers, time zones, call windows (their times:
-- sql/027_scheduling.sql).
-- Every error names what is wrong and the allowed values, and is raised before anything is
-- written (BC001).

-- (A SQL-standard body without SET, like the rules in sql/010: inlined into create_batch's check
-- of every entry, which a SET would turn into a function call per row, half the check's time.)
CREATE OR REPLACE FUNCTION batchctl.is_e164(p_phone text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_phone OPERATOR(pg_catalog.~) '^\+[1-9][0-9]{6,14}$';

-- A lead's region: an ISO 3166-2 subdivision code (US-FL, CA-ON, FR-75), any case (stored upper
-- case). Only its form is checked: a well-formed code no rule names is simply ruled by its
-- country. What is wrong with it, or null. (Inlined into entry_problem, like is_e164.)
CREATE OR REPLACE FUNCTION batchctl.region_problem(p_region text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_region IS NOT NULL AND NOT p_region OPERATOR(pg_catalog.~) '^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$'
        THEN pg_catalog.format('region %s is not an ISO 3166-2 subdivision code (country, hyphen, 1 to 3 letters or digits, e.g. US-FL)',
                               pg_catalog.to_jsonb(batchctl.excerpt(p_region))::text)
END;

-- Good enough to catch a typo in a report recipient; the SMTP server has the last word.
CREATE OR REPLACE FUNCTION batchctl.is_email(p_address text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT p_address ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' $$;

-- What is wrong with a list of report recipients, said after its name (": ..." or "[i] ..."),
-- or null. A report goes to a team, not a mailing list: at most 100 addresses; 254 characters
-- is the longest address SMTP can carry (RFC 5321's 256-octet path less its angle brackets).
CREATE OR REPLACE FUNCTION batchctl.recipients_problem(p_addresses text[])
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN cardinality(p_addresses) > 100
            THEN format(': %s addresses, more than the 100 allowed', cardinality(p_addresses))
        ELSE coalesce(
            (SELECT format('[%s] is %s characters, more than the 254 allowed', ord - 1, length(a))
               FROM unnest(p_addresses) WITH ORDINALITY AS x (a, ord)
              WHERE length(a) > 254 ORDER BY ord LIMIT 1),
            (SELECT ': ' || string_agg(coalesce(to_jsonb(excerpt(a))::text, 'null'), ', ')
                    || ' not an e-mail address'
               FROM unnest(p_addresses) a WHERE a IS NULL OR NOT is_email(a)))
    END
$$;

-- What a time zone the tz database does not name is told (the caller knows it is unknown).
CREATE OR REPLACE FUNCTION batchctl.zone_problem(p_zone text, p_suggestion text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.format('unknown time zone %s (%s)',
                         coalesce(pg_catalog.to_jsonb(batchctl.excerpt(p_zone))::text, 'null'),
                         coalesce('did you mean ' || p_suggestion || '?',
                                  'an IANA name such as Europe/Berlin'));

-- Time zones: exactly the names of pg_timezone_names, PostgreSQL's copy of the IANA tz database
-- (Europe/Berlin, UTC, Etc/GMT-14 .. Etc/GMT+12, and its legacy names such as EST5EDT), spelt
-- as it spells them. PostgreSQL itself also reads abbreviations (PST, IST, Z, UT), POSIX
-- strings ('FOO5BAR', 'UTC+99', 'Etc/GMT-99' as 99 hours east) and any capitalisation as
-- zones; those are refused.
--
-- The verdict on every distinct name in p_zones (nulls left out): valid, or else the name's
-- right spelling when it differs only in case or surrounding blanks (suggestion; null when
-- there is none) and what an error tells of it (problem, zone_problem's words: the CLI's lead
-- files and create_batch say the same). pg_timezone_names reads every zone file (about 10 ms), so it is read once per
-- call, however many names are asked about, and not at all when p_zones names none.
CREATE OR REPLACE FUNCTION batchctl.timezone_verdicts(p_zones text[])
RETURNS TABLE (tz text, valid boolean, suggestion text, problem text) LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM unnest(p_zones) g (name) WHERE g.name IS NOT NULL) THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH names AS MATERIALIZED (SELECT n.name FROM pg_timezone_names n),
             given AS (SELECT DISTINCT g.name FROM unnest(p_zones) g (name) WHERE g.name IS NOT NULL)
        SELECT v.name, v.valid, v.suggestion,
               CASE WHEN NOT v.valid THEN zone_problem(v.name, v.suggestion) END
          FROM (SELECT g.name, exact.name IS NOT NULL AS valid,
                       CASE WHEN exact.name IS NULL
                            THEN (SELECT min(n.name) FROM names n
                                   WHERE lower(n.name) = lower(btrim(g.name))) END AS suggestion
                  FROM given g
                  LEFT JOIN names exact ON exact.name = g.name) v;
END
$$;

-- One name (create_tenant); a list is checked with timezone_verdicts, in one read.
CREATE OR REPLACE FUNCTION batchctl.is_valid_timezone(p_tz text)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT v.valid FROM timezone_verdicts(ARRAY[p_tz]) v), false) $$;

-- The call statuses a retry may be asked for: outcomes where another try can succeed.
CREATE OR REPLACE FUNCTION batchctl.retryable_outcomes()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT ARRAY['failed', 'error', 'not_reachable', 'declined', 'rejected', 'no_answer', 'busy',
                 'voicemail']
$$;

CREATE OR REPLACE FUNCTION batchctl.default_options()
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'agent_name', NULL,
        'wave_size', 15,
        'dispatch_mode', 'window',
        'max_retries', 2,
        'pickup_timeout_s', 1200,
        'ringing_timeout_s', 1200,
        'ongoing_timeout_s', 900,
        'retry_on', '[]'::jsonb,
        'max_attempts', 1,
        'retry_delay_s', 3600,
        'retry_policy', '{}'::jsonb,
        'call_window', NULL,
        'start_at', NULL,
        'end_at', NULL,
        'report_to', '[]'::jsonb,
        'report_delay_s', 15,
        'autostart', true,
        'trunk', NULL,
        'metadata', '{}'::jsonb)
$$;

CREATE OR REPLACE FUNCTION batchctl.require_int(
    p_key text, p_value jsonb, p_min integer, p_max integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(p_value) <> 'number' OR p_value::text !~ '^-?[0-9]+$'
       OR p_value::numeric NOT BETWEEN p_min AND p_max THEN
        RAISE EXCEPTION 'option %: expected an integer from % to %, got %', p_key, p_min, p_max, p_value
            USING ERRCODE = 'BC001';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.require_outcomes(p_key text, p_value jsonb)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
BEGIN
    IF jsonb_typeof(p_value) <> 'array' THEN
        RAISE EXCEPTION 'option %: expected an array of call outcomes, got %', p_key, p_value
            USING ERRCODE = 'BC001';
    END IF;
    SELECT string_agg(v::text, ', ') INTO v_bad
      FROM jsonb_array_elements(p_value) v
     WHERE jsonb_typeof(v) <> 'string' OR NOT (v #>> '{}') = ANY (retryable_outcomes());
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'option %: % not a retryable outcome (allowed: %)',
            p_key, v_bad, array_to_string(retryable_outcomes(), ', ') USING ERRCODE = 'BC001';
    END IF;
END
$$;

-- Whether p_year-p_month-p_day is a day of the calendar (2026-02-30 is not).
CREATE OR REPLACE FUNCTION batchctl.is_calendar_day(p_year integer, p_month integer, p_day integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_month BETWEEN 1 AND 12 AND p_day >= 1
   AND p_day <= pg_catalog.date_part('day', pg_catalog.make_date(p_year, p_month, 1)
                                            + interval '1 month' - interval '1 day');

-- What is wrong with a date-time given as text, said after it ("… has no UTC offset"), or null
-- (also for null):
-- an ISO 8601 date-time with its UTC offset (2026-11-23T09:00:00Z, 2026-11-23
-- 09:00:00.250+01:00; seconds and fraction optional) in the years 2000 to 2100. Refused: a time
-- without an offset (PostgreSQL would read it in the server's TimeZone setting, which the
-- caller may not know), the words PostgreSQL also takes (now, today, tomorrow, yesterday, epoch,
-- infinity, -infinity, allballs), 24:00, leap seconds and days the calendar lacks. A text it
-- finds nothing wrong with casts to timestamptz without error, so rows are checked without a
-- subtransaction each.
CREATE OR REPLACE FUNCTION batchctl.timestamp_problem(p_value text)
RETURNS text LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    -- year, month, day, offset
    v_parts constant text[] := regexp_match(p_value,
        '^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]'
        '(?::[0-5][0-9](?:\.[0-9]{1,9})?)?([Zz]|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)?$');
BEGIN
    RETURN CASE
        WHEN p_value IS NULL THEN NULL
        WHEN v_parts IS NULL
            THEN 'is not an ISO 8601 date-time with a UTC offset (e.g. 2026-11-23T09:00:00Z or 2026-11-23 09:00:00+01:00)'
        WHEN v_parts[4] IS NULL
            THEN 'has no UTC offset (add Z or +HH:MM, e.g. 2026-11-23T09:00:00Z); a time without one would be read in the server''s time zone'
        WHEN v_parts[1]::integer NOT BETWEEN 2000 AND 2100
            THEN 'is not in the years 2000 to 2100'
        WHEN NOT is_calendar_day(v_parts[1]::integer, v_parts[2]::integer, v_parts[3]::integer)
            THEN 'is not a date-time (no such day)'
    END;
END
$$;

-- start_at / end_at: a date-time as timestamp_problem accepts it, or null.
CREATE OR REPLACE FUNCTION batchctl.parse_timestamptz(p_key text, p_value jsonb)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL OR p_value = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_value) <> 'string' THEN
        RAISE EXCEPTION 'option %: expected an ISO 8601 timestamp string, got %', p_key, p_value
            USING ERRCODE = 'BC001';
    END IF;
    IF timestamp_problem(p_value #>> '{}') IS NOT NULL THEN
        RAISE EXCEPTION 'option %: % %', p_key, p_value, timestamp_problem(p_value #>> '{}')
            USING ERRCODE = 'BC001';
    END IF;
    RETURN (p_value #>> '{}')::timestamptz;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.validate_call_window(p_window jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_days constant text[] := ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
    v_key text;
    v_bad text;
BEGIN
    IF p_window IS NULL OR p_window = 'null' THEN
        RETURN 'null';
    END IF;
    IF jsonb_typeof(p_window) <> 'object' THEN
        RAISE EXCEPTION 'option call_window: expected null or {"start": "09:00", "end": "20:00", "days": ["mon", …]}, got %',
            p_window USING ERRCODE = 'BC001';
    END IF;
    SELECT k INTO v_key FROM jsonb_object_keys(p_window) k WHERE k NOT IN ('start', 'end', 'days') LIMIT 1;
    IF v_key IS NOT NULL THEN
        RAISE EXCEPTION 'option call_window: unknown key "%" (allowed: start, end, days)', v_key
            USING ERRCODE = 'BC001';
    END IF;
    FOREACH v_key IN ARRAY ARRAY['start', 'end'] LOOP
        IF jsonb_typeof(p_window -> v_key) IS DISTINCT FROM 'string'
           OR (p_window ->> v_key) !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' THEN
            RAISE EXCEPTION 'option call_window.%: expected a time "HH:MM" (00:00 to 23:59), got %',
                v_key, coalesce((p_window -> v_key)::text, 'nothing') USING ERRCODE = 'BC001';
        END IF;
    END LOOP;
    IF (p_window ->> 'start')::time >= (p_window ->> 'end')::time THEN
        RAISE EXCEPTION 'option call_window: start % must be before end %',
            p_window ->> 'start', p_window ->> 'end' USING ERRCODE = 'BC001';
    END IF;
    IF p_window ? 'days' THEN
        IF jsonb_typeof(p_window -> 'days') <> 'array' OR jsonb_array_length(p_window -> 'days') = 0 THEN
            RAISE EXCEPTION 'option call_window.days: expected a non-empty array of %, got %',
                array_to_string(v_days, ', '), p_window -> 'days' USING ERRCODE = 'BC001';
        END IF;
        SELECT string_agg(d::text, ', ') INTO v_bad FROM jsonb_array_elements(p_window -> 'days') d
         WHERE jsonb_typeof(d) <> 'string' OR NOT lower(d #>> '{}') = ANY (v_days);
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'option call_window.days: % not a day (allowed: %)', v_bad,
                array_to_string(v_days, ', ') USING ERRCODE = 'BC001';
        END IF;
        RETURN p_window || jsonb_build_object('days',
            (SELECT jsonb_agg(DISTINCT lower(d #>> '{}')) FROM jsonb_array_elements(p_window -> 'days') d));
    END IF;
    RETURN p_window || jsonb_build_object('days', to_jsonb(v_days));
END
$$;

-- p_given merged over p_defaults, once it is a JSON object of their keys: BC001 naming p_what
-- (options, policy) otherwise, with the unknown keys and the allowed ones. Null, and a
-- top-level null value, mean the default (nulls inside values, e.g. metadata, are kept).
-- normalize_options and normalize_policy (sql/029) then check each key's value.
CREATE OR REPLACE FUNCTION batchctl.over_defaults(p_what text, p_given jsonb, p_defaults jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text;
BEGIN
    IF p_given IS NULL OR p_given = 'null' THEN
        RETURN p_defaults;
    END IF;
    IF jsonb_typeof(p_given) <> 'object' THEN
        RAISE EXCEPTION '%: expected a JSON object, got %', p_what, jsonb_typeof(p_given)
            USING ERRCODE = 'BC001';
    END IF;
    SELECT string_agg(format('"%s"', k), ', ') INTO v_unknown
      FROM jsonb_object_keys(p_given) k WHERE NOT p_defaults ? k;
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION '%: unknown key % (allowed: %)', p_what, v_unknown,
            (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(p_defaults) k)
            USING ERRCODE = 'BC001';
    END IF;
    RETURN p_defaults || coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(p_given)
                                    WHERE value <> 'null'), '{}');
END
$$;

-- Options merged over the defaults, every key checked. Unknown keys and ill-typed values raise
-- BC001 naming the key.
CREATE OR REPLACE FUNCTION batchctl.normalize_options(p_options jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb := over_defaults('options', p_options, default_options());
    v_key text;
    v_policy record;
    v_start timestamptz;
    v_end timestamptz;
BEGIN
    IF v -> 'agent_name' <> 'null' AND (jsonb_typeof(v -> 'agent_name') <> 'string'
                                       OR length(v ->> 'agent_name') = 0) THEN
        RAISE EXCEPTION 'option agent_name: expected a non-empty string, got %', v -> 'agent_name'
            USING ERRCODE = 'BC001';
    END IF;
    IF text_problem(v ->> 'agent_name') IS NOT NULL THEN
        RAISE EXCEPTION 'option agent_name: %', text_problem(v ->> 'agent_name') USING ERRCODE = 'BC001';
    END IF;
    PERFORM require_int('wave_size', v -> 'wave_size', 1, 1000);
    IF jsonb_typeof(v -> 'dispatch_mode') <> 'string'
       OR v ->> 'dispatch_mode' NOT IN ('wave', 'window') THEN
        RAISE EXCEPTION 'option dispatch_mode: expected "wave" or "window", got %', v -> 'dispatch_mode'
            USING ERRCODE = 'BC001';
    END IF;
    PERFORM require_int('max_retries', v -> 'max_retries', 0, 100);
    PERFORM require_int('pickup_timeout_s', v -> 'pickup_timeout_s', 1, 604800);
    PERFORM require_int('ringing_timeout_s', v -> 'ringing_timeout_s', 1, 604800);
    PERFORM require_int('ongoing_timeout_s', v -> 'ongoing_timeout_s', 1, 604800);
    PERFORM require_outcomes('retry_on', v -> 'retry_on');
    PERFORM require_int('max_attempts', v -> 'max_attempts', 1, 100);
    PERFORM require_int('retry_delay_s', v -> 'retry_delay_s', 0, 2592000);
    IF jsonb_typeof(v -> 'retry_policy') <> 'object' THEN
        RAISE EXCEPTION 'option retry_policy: expected {outcome: {max_attempts, delay_s}}, got %',
            v -> 'retry_policy' USING ERRCODE = 'BC001';
    END IF;
    FOR v_policy IN SELECT key, value FROM jsonb_each(v -> 'retry_policy') LOOP
        PERFORM require_outcomes('retry_policy', jsonb_build_array(v_policy.key));
        IF jsonb_typeof(v_policy.value) <> 'object'
           OR EXISTS (SELECT 1 FROM jsonb_object_keys(v_policy.value) k
                       WHERE k NOT IN ('max_attempts', 'delay_s')) THEN
            RAISE EXCEPTION 'option retry_policy.%: expected {"max_attempts": n, "delay_s": n}, got %',
                v_policy.key, v_policy.value USING ERRCODE = 'BC001';
        END IF;
        IF v_policy.value ? 'max_attempts' THEN
            PERFORM require_int('retry_policy.' || v_policy.key || '.max_attempts',
                                v_policy.value -> 'max_attempts', 1, 100);
        END IF;
        IF v_policy.value ? 'delay_s' THEN
            PERFORM require_int('retry_policy.' || v_policy.key || '.delay_s',
                                v_policy.value -> 'delay_s', 0, 2592000);
        END IF;
    END LOOP;
    v := jsonb_set(v, '{call_window}', validate_call_window(v -> 'call_window'));
    v_start := parse_timestamptz('start_at', v -> 'start_at');
    v_end := parse_timestamptz('end_at', v -> 'end_at');
    IF v_start IS NOT NULL AND v_end IS NOT NULL AND v_end <= v_start THEN
        RAISE EXCEPTION 'option end_at: % must be after start_at %', v_end, v_start
            USING ERRCODE = 'BC001';
    END IF;
    v := v || jsonb_build_object('start_at', v_start, 'end_at', v_end);
    IF jsonb_typeof(v -> 'report_to') <> 'array' THEN
        RAISE EXCEPTION 'option report_to: expected an array of e-mail addresses, got %', v -> 'report_to'
            USING ERRCODE = 'BC001';
    END IF;
    SELECT string_agg(a::text, ', ') INTO v_key FROM jsonb_array_elements(v -> 'report_to') a
     WHERE jsonb_typeof(a) <> 'string';
    IF v_key IS NOT NULL THEN
        RAISE EXCEPTION 'option report_to: % not an e-mail address', v_key USING ERRCODE = 'BC001';
    END IF;
    v_key := recipients_problem(ARRAY(SELECT a #>> '{}' FROM jsonb_array_elements(v -> 'report_to') a));
    IF v_key IS NOT NULL THEN
        RAISE EXCEPTION 'option report_to%', v_key USING ERRCODE = 'BC001';
    END IF;
    PERFORM require_int('report_delay_s', v -> 'report_delay_s', 0, 86400);
    -- (Which of the tenant's trunks it names is create_batch_from_rows' check: trunk_ref.)
    IF v -> 'trunk' <> 'null' AND (jsonb_typeof(v -> 'trunk') <> 'string'
                                   OR length(v ->> 'trunk') NOT BETWEEN 1 AND 200) THEN
        RAISE EXCEPTION 'option trunk: expected the name or id of one of the tenant''s trunks, got %',
            excerpt((v -> 'trunk')::text) USING ERRCODE = 'BC001';
    END IF;
    IF jsonb_typeof(v -> 'autostart') <> 'boolean' THEN
        RAISE EXCEPTION 'option autostart: expected true or false, got %', v -> 'autostart'
            USING ERRCODE = 'BC001';
    END IF;
    IF jsonb_typeof(v -> 'metadata') <> 'object' THEN
        RAISE EXCEPTION 'option metadata: expected a JSON object, got %', v -> 'metadata'
            USING ERRCODE = 'BC001';
    END IF;
    IF json_problem(v -> 'metadata', max_context_bytes()) IS NOT NULL THEN
        RAISE EXCEPTION 'option metadata: %', json_problem(v -> 'metadata', max_context_bytes())
            USING ERRCODE = 'BC001';
    END IF;
    RETURN v;
END
$$;

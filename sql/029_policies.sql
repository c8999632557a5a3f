-- Tenant compliance policies (docs/compliance.md): what a tenant's policy may say, and the
-- limits it and the jurisdiction rules put on calling one number: rolling frequency caps,
-- cool-offs after an outcome, holidays. The claim and the sweep ask these (through sql/027's
-- next_allowed and dial_holds), explain_entry shows them (sql/046).

-- Every key with its default: the policy of a tenant that never set one.
CREATE OR REPLACE FUNCTION batchctl.default_policy()
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"jurisdiction_rules": true, "frequency": {}, "cooloff_s": {}, "holidays": [],
         "require_consent": false}'::jsonb;

-- A stored policy (tenants.policy, validated by normalize_policy) over the defaults.
CREATE OR REPLACE FUNCTION batchctl.effective_policy(p_policy jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN batchctl.default_policy() OPERATOR(pg_catalog.||) coalesce(p_policy, '{}');

-- The rolling windows a frequency cap may name.
CREATE OR REPLACE FUNCTION batchctl.frequency_windows()
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{"per_24h": "24 hours", "per_7d": "7 days", "per_30d": "30 days"}'::jsonb;

-- The call outcomes a cool-off may follow: every final call status.
CREATE OR REPLACE FUNCTION batchctl.final_call_statuses()
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['ended', 'completed', 'failed', 'error', 'not_reachable', 'declined', 'rejected',
             'no_answer', 'busy', 'voicemail', 'cancelled'];

-- What a jurisdiction rule's refusal_cooloff follows: the called person refused the call.
CREATE OR REPLACE FUNCTION batchctl.refusal_statuses()
RETURNS batchctl.call_status[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY['declined', 'rejected']::batchctl.call_status[];

-- A policy map of counts (frequency: calls per window; cooloff_s: seconds per outcome): a JSON
-- object whose keys are among p_allowed (each p_kind) and whose values are integers from 1 to
-- p_max (p_unit). BC001 naming the key otherwise: policy.frequency.per_24h: …
CREATE OR REPLACE FUNCTION batchctl.require_counts(
    p_key text, p_value jsonb, p_shape text, p_kind text, p_allowed text[], p_unit text,
    p_max integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_item record;
BEGIN
    IF jsonb_typeof(p_value) <> 'object' THEN
        RAISE EXCEPTION 'policy.%: expected %, got %', p_key, p_shape, p_value USING ERRCODE = 'BC001';
    END IF;
    FOR v_item IN SELECT key, value FROM jsonb_each(p_value) LOOP
        IF NOT v_item.key = ANY (p_allowed) THEN
            RAISE EXCEPTION 'policy.%: unknown % "%" (allowed: %)', p_key, p_kind, v_item.key,
                array_to_string(p_allowed, ', ') USING ERRCODE = 'BC001';
        END IF;
        IF jsonb_typeof(v_item.value) <> 'number' OR v_item.value::text !~ '^[0-9]+$'
           OR v_item.value::numeric NOT BETWEEN 1 AND p_max THEN
            RAISE EXCEPTION 'policy.%.%: expected % from 1 to %, got %', p_key, v_item.key, p_unit,
                p_max, v_item.value USING ERRCODE = 'BC001';
        END IF;
    END LOOP;
END
$$;

-- A policy checked key by key, over the defaults; unknown keys and ill-typed values raise
-- BC001 naming the key (policy.frequency.per_12h: …), as normalize_options does for batches.
-- Bounded: at most 1000 holidays, caps up to 10000 calls, cool-offs up to 366 days.
CREATE OR REPLACE FUNCTION batchctl.normalize_policy(p_policy jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v constant jsonb := over_defaults('policy', p_policy, default_policy());
    v_bad text;
BEGIN
    FOREACH v_bad IN ARRAY ARRAY['jurisdiction_rules', 'require_consent'] LOOP
        IF jsonb_typeof(v -> v_bad) <> 'boolean' THEN
            RAISE EXCEPTION 'policy.%: expected true or false, got %', v_bad, v -> v_bad
                USING ERRCODE = 'BC001';
        END IF;
    END LOOP;
    PERFORM require_counts('frequency', v -> 'frequency',
                           '{"per_24h": n, "per_7d": n, "per_30d": n} (any of them)', 'window',
                           ARRAY(SELECT jsonb_object_keys(frequency_windows())),
                           'a number of calls', 10000);
    PERFORM require_counts('cooloff_s', v -> 'cooloff_s',
                           '{outcome: seconds}, e.g. {"declined": 5184000}', 'call outcome',
                           final_call_statuses(), 'seconds (366 days at most)', 31622400);

    IF jsonb_typeof(v -> 'holidays') <> 'array' THEN
        RAISE EXCEPTION 'policy.holidays: expected an array of dates "YYYY-MM-DD", got %',
            v -> 'holidays' USING ERRCODE = 'BC001';
    END IF;
    IF jsonb_array_length(v -> 'holidays') > 1000 THEN
        RAISE EXCEPTION 'policy.holidays: % dates, more than the 1000 allowed',
            jsonb_array_length(v -> 'holidays') USING ERRCODE = 'BC001';
    END IF;
    SELECT format('[%s] %s', ord - 1, d) INTO v_bad
      FROM jsonb_array_elements(v -> 'holidays') WITH ORDINALITY AS x (d, ord)
     WHERE CASE WHEN jsonb_typeof(d) <> 'string'
                  OR (d #>> '{}') !~ '^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'
                THEN true
                ELSE NOT is_calendar_day(substr(d #>> '{}', 1, 4)::integer,
                                         substr(d #>> '{}', 6, 2)::integer,
                                         substr(d #>> '{}', 9, 2)::integer) END
     ORDER BY ord LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'policy.holidays%: expected a date "YYYY-MM-DD" in the years 2000 to 2100',
            v_bad USING ERRCODE = 'BC001';
    END IF;
    -- Stored sorted and once each.
    RETURN jsonb_set(v, '{holidays}', coalesce(
        (SELECT jsonb_agg(DISTINCT d) FROM jsonb_array_elements_text(v -> 'holidays') d), '[]'));
END
$$;

-- The keys of the jurisdiction rules that apply to an entry (its jurisdictions, from intake)
-- under its tenant's policy: none when the policy switches the rules off. (SQL-standard bodies
-- without SET: inlined into the claim's and the sweep's statements.)
CREATE OR REPLACE FUNCTION batchctl.applied_jurisdictions(p_policy jsonb, p_jurisdictions text[])
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN (p_policy OPERATOR(pg_catalog.->>) 'jurisdiction_rules')::boolean IS DISTINCT FROM false
            THEN p_jurisdictions
            ELSE '{}'::text[] END;

-- The tenant's holidays as dates (an effective policy's).
CREATE OR REPLACE FUNCTION batchctl.policy_holidays(p_policy jsonb)
RETURNS date[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT d::date FROM pg_catalog.jsonb_array_elements_text(
                 p_policy OPERATOR(pg_catalog.->) 'holidays') d);

-- Whether a policy, with the jurisdiction rules it applies, limits how often one number is
-- called (a frequency cap or a cool-off, its own or a rule's). Without one, the claim never
-- reads the call history.
CREATE OR REPLACE FUNCTION batchctl.limits_contacts(p_policy jsonb)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN p_policy OPERATOR(pg_catalog.->) 'frequency' OPERATOR(pg_catalog.<>) '{}'
    OR p_policy OPERATOR(pg_catalog.->) 'cooloff_s' OPERATOR(pg_catalog.<>) '{}'
    OR ((p_policy OPERATOR(pg_catalog.->>) 'jurisdiction_rules')::boolean
        AND EXISTS (SELECT FROM batchctl.jurisdiction_rules r
                     WHERE r.max_calls IS NOT NULL OR r.refusal_cooloff IS NOT NULL));

-- The frequency caps and cool-offs that hold p_phone now (at p_at), under its tenant's
-- (effective) policy p_policy and the jurisdiction rules p_keys, each with the moment it lifts
-- (until) and its name (rule: frequency:per_24h, frequency:US-FL, cooloff:declined,
-- cooloff:FR); no row when none holds. The claim asks whether there is any; the hold-back
-- waits for the last to lift; explain_entry lists them all.
-- A call counts from its dial attempt (its call log's started_at), in every batch of the tenant;
-- a cap of n per window lifts when the n-th most recent call in the window leaves it. A
-- cool-off runs from the end of the last call with its outcome (a rule's: a refusal,
-- refusal_statuses). One probe of call_logs_by_number, over the longest span any limit needs
-- plus 21 days (the longest a call can last: pickup, ringing and ongoing timeouts at their
-- maximum) for cool-offs counted from a call's end.
-- (A SQL-standard body without SET, every name qualified: inlined into the claim's statement,
-- where a function call per candidate cost more than the probe itself.)
CREATE OR REPLACE FUNCTION batchctl.contact_wait(
    p_tenant_id uuid, p_phone text, p_policy jsonb, p_keys text[], p_at timestamptz)
RETURNS TABLE (until timestamptz, rule text) LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    WITH limits AS (
        SELECT 'frequency:' OPERATOR(pg_catalog.||) f.key AS rule, f.value::integer AS max_calls,
               (batchctl.frequency_windows() OPERATOR(pg_catalog.->>) f.key)::interval AS span,
               NULL::batchctl.call_status[] AS after
          FROM pg_catalog.jsonb_each_text(p_policy OPERATOR(pg_catalog.->) 'frequency') f
        UNION ALL
        SELECT 'frequency:' OPERATOR(pg_catalog.||) r.jurisdiction, r.max_calls, r.cap_window, NULL
          FROM batchctl.jurisdiction_rules r
         WHERE r.jurisdiction OPERATOR(pg_catalog.=) ANY (p_keys) AND r.max_calls IS NOT NULL
        UNION ALL
        SELECT 'cooloff:' OPERATOR(pg_catalog.||) c.key, NULL,
               pg_catalog.make_interval(secs => c.value::integer),
               ARRAY[c.key::batchctl.call_status]
          FROM pg_catalog.jsonb_each_text(p_policy OPERATOR(pg_catalog.->) 'cooloff_s') c
        UNION ALL
        SELECT 'cooloff:' OPERATOR(pg_catalog.||) r.jurisdiction, NULL, r.refusal_cooloff,
               batchctl.refusal_statuses()
          FROM batchctl.jurisdiction_rules r
         WHERE r.jurisdiction OPERATOR(pg_catalog.=) ANY (p_keys) AND r.refusal_cooloff IS NOT NULL
    ), calls AS MATERIALIZED (
        SELECT c.started_at, c.status, coalesce(c.ended_at, c.status_changed_at) AS ended_at
          FROM batchctl.call_logs c
         WHERE c.tenant_id OPERATOR(pg_catalog.=) p_tenant_id
           AND c.to_phone OPERATOR(pg_catalog.=) p_phone
           AND c.started_at OPERATOR(pg_catalog.>)
               ((p_at OPERATOR(pg_catalog.-) (SELECT pg_catalog.max(l.span) FROM limits l))
                OPERATOR(pg_catalog.-) interval '21 days')
    ), history AS (
        -- The number's starts, most recent first (the n-th of them tells whether a cap of n
        -- holds), and the end of its last call with each outcome.
        SELECT (SELECT pg_catalog.array_agg(c.started_at ORDER BY c.started_at DESC) FROM calls c)
                   AS starts,
               (SELECT pg_catalog.array_agg(c.ended_at) FROM calls c) AS ends,
               (SELECT pg_catalog.array_agg(c.status) FROM calls c) AS statuses
    )
    SELECT w.until, l.rule
      FROM limits l, history h
     CROSS JOIN LATERAL (
         SELECT CASE WHEN l.after IS NULL
                     THEN h.starts[l.max_calls]
                     ELSE (SELECT pg_catalog.max(x.ended_at)
                             FROM ROWS FROM (pg_catalog.unnest(h.ends), pg_catalog.unnest(h.statuses))
                                  AS x (ended_at, status)
                            WHERE x.status OPERATOR(pg_catalog.=) ANY (l.after))
                END OPERATOR(pg_catalog.+) l.span AS until
     ) w
     WHERE w.until OPERATOR(pg_catalog.>) p_at;
END;

-- Whether anything besides a batch's call window may hold back an entry of a tenant with the
-- (effective) policy p_policy: the jurisdiction rules it applies (when the owner has any:
-- p_rules), its holidays, its or the rules' limits on calling one number. Without it, the claim
-- and the sweep skip the look at each batch's due entries.
CREATE OR REPLACE FUNCTION batchctl.policy_may_hold(p_policy jsonb, p_rules boolean)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN (p_rules AND (p_policy OPERATOR(pg_catalog.->>) 'jurisdiction_rules')::boolean)
    OR p_policy OPERATOR(pg_catalog.->) 'holidays' OPERATOR(pg_catalog.<>) '[]'
    OR batchctl.limits_contacts(p_policy);

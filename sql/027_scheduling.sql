-- Scheduling: when an entry may be dialled. One predicate (may_dial: the batch's dialling
-- period, start_at to end_at, and the call window in the lead's local time) and one "when next"
-- (next_allowed); the claim and the sweep ask these (dial_holds), nothing else.
-- The calling hours of the lead's jurisdictions (batchctl.jurisdiction_rules, docs/compliance.md)
-- and its tenant's holidays are part of both: an entry is dialled only when its batch's call
-- window, every rule that applies to it and its tenant's policy allow it, the strictest
-- winning, whatever the batch's options say. (The policy's limits on calling one number, and
-- what it is: sql/029.)

-- The zone a lead's local time is read in: its own, else its tenant's.
-- (SQL-standard bodies without SET, inlined like the rules in sql/010.)
CREATE OR REPLACE FUNCTION batchctl.lead_zone(p_entry_zone text, p_tenant_zone text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(p_entry_zone, p_tenant_zone);

-- Whether p_at lies in the batch's dialling period: past start_at, before end_at (each
-- optional).
CREATE OR REPLACE FUNCTION batchctl.dialling_open(p_options jsonb, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN (p_options ->> 'start_at' IS NULL OR (p_options ->> 'start_at')::timestamptz <= p_at)
   AND (p_options ->> 'end_at' IS NULL OR (p_options ->> 'end_at')::timestamptz > p_at);

-- Whether the batch's dialling period is over at p_at (end_at passed): what is not dialled by
-- then never will be.
CREATE OR REPLACE FUNCTION batchctl.dialling_over(p_options jsonb, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN p_options ->> 'end_at' IS NOT NULL AND (p_options ->> 'end_at')::timestamptz <= p_at;

-- The first instant at which the clock of zone p_tz reads p_local or later. PostgreSQL's own
-- reading (p_local AT TIME ZONE p_tz) differs from it only around a clock change: a local time
-- the clock skipped (spring forward) it reads with the offset from before the change, which
-- lands after the change by the size of the jump (02:30 New York on 2026-03-08 becomes 03:30
-- EDT), where the clock reached 02:30 at the change itself (03:00 EDT); a local time the clock
-- showed twice (fall back) it reads as the second showing, where the first came earlier.
CREATE OR REPLACE FUNCTION batchctl.local_instant(p_local timestamp, p_tz text)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_at timestamptz := p_local AT TIME ZONE p_tz;
    v_shown timestamp := v_at AT TIME ZONE p_tz;  -- what the clock shows at v_at
    v_lo bigint;
    v_hi bigint;
    v_mid bigint;
    v_back interval;
    v_first timestamptz;
BEGIN
    IF v_shown > p_local THEN
        -- Skipped: the change lies in (v_at - jump, v_at], where the clock is first at or past
        -- p_local. Found to the second (zone files give changes in whole seconds) by
        -- bisection: about 12 steps for an hour's jump.
        v_lo := floor(extract(epoch FROM v_at - (v_shown - p_local)));  -- clock before p_local
        v_hi := ceil(extract(epoch FROM v_at));                          -- clock at or past it
        WHILE v_hi - v_lo > 1 LOOP
            v_mid := (v_lo + v_hi) / 2;
            IF to_timestamp(v_mid) AT TIME ZONE p_tz >= p_local THEN
                v_hi := v_mid;
            ELSE
                v_lo := v_mid;
            END IF;
        END LOOP;
        RETURN to_timestamp(v_hi);
    END IF;
    -- Shown twice? A day before v_at (before the change, if one is near: no zone changes twice
    -- within days) the clock ran ahead of v_at's offset by as much as it was set back since;
    -- p_local read with that offset is its first showing, if the clock showed it then.
    v_back := ((v_at - interval '1 day') AT TIME ZONE p_tz) - (p_local - interval '1 day');
    IF v_back > interval '0' THEN
        v_first := v_at - v_back;
        IF v_first AT TIME ZONE p_tz = p_local THEN
            RETURN v_first;
        END IF;
    END IF;
    RETURN v_at;
END
$$;

-- The first moment at or after p_at, on the local day p_day of zone p_zone, at which its
-- clock shows a time from p_from up to p_to; null when there is none that day. DST-exact: on
-- the usual day the zone keeps one offset from noon the day before to noon the day after, so
-- every local time converts directly; near a clock change local_instant finds the boundaries
-- (a boundary the clock skips is the moment of the change, one it shows twice its first
-- showing, and hours the clock skips entirely are no opening). The call window
-- (next_window_open) and the calling hours (next_allowed) both find their openings with this.
CREATE OR REPLACE FUNCTION batchctl.first_open_on(
    p_day date, p_from time, p_to time, p_zone text, p_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_plain constant boolean := ((p_day + 1) + time '12:00') AT TIME ZONE p_zone
                                - ((p_day - 1) + time '12:00') AT TIME ZONE p_zone = interval '48 hours';
    v_open constant timestamptz := CASE WHEN v_plain THEN (p_day + p_from) AT TIME ZONE p_zone
                                        ELSE local_instant(p_day + p_from, p_zone) END;
    v_close constant timestamptz := CASE WHEN v_plain THEN (p_day + p_to) AT TIME ZONE p_zone
                                         ELSE local_instant(p_day + p_to, p_zone) END;
BEGIN
    RETURN CASE WHEN p_at < v_close AND v_open < v_close THEN greatest(p_at, v_open) END;
END
$$;

-- The first moment at or after p_now inside the call window, in the recipient's local time
-- (DST-correct: first_open_on). NULL window: any time, so p_now.
CREATE OR REPLACE FUNCTION batchctl.next_window_open(p_window jsonb, p_tz text, p_now timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_day date;
    v_open timestamptz;
BEGIN
    IF p_window IS NULL OR p_window = 'null' THEN
        RETURN p_now;
    END IF;
    -- Eight days: every weekday once, and today again after its window is past.
    FOR i IN 0..7 LOOP
        v_day := (p_now AT TIME ZONE p_tz)::date + i;
        CONTINUE WHEN NOT (p_window -> 'days')
                          ? ('{mon,tue,wed,thu,fri,sat,sun}'::text[])[extract(isodow FROM v_day)::integer];
        v_open := first_open_on(v_day, (p_window ->> 'start')::time, (p_window ->> 'end')::time,
                                p_tz, p_now);
        IF v_open IS NOT NULL THEN
            RETURN v_open;
        END IF;
    END LOOP;
    RETURN NULL;  -- a window whose every day the clock skips
END
$$;

CREATE OR REPLACE FUNCTION batchctl.in_call_window(p_window jsonb, p_tz text, p_now timestamptz)
RETURNS boolean LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT next_window_open(p_window, p_tz, p_now) = p_now $$;

-- May an entry of a batch with p_options, whose lead's zone is p_zone, be dialled at p_at?
CREATE OR REPLACE FUNCTION batchctl.may_dial(p_options jsonb, p_zone text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN batchctl.dialling_open(p_options, p_at)
   AND (p_options -> 'call_window' = 'null'
        OR batchctl.in_call_window(p_options -> 'call_window', p_zone, p_at));

-- Calling hours by jurisdiction (docs/compliance.md). An entry's jurisdictions are its country
-- and subdivisions (sql/042 derives them at intake), and the country of each subdivision: a
-- lead whose region is CA-ON is ruled by CA too, whatever its number says. Every rule of these
-- applies; the rules are read in the lead's zone (lead_zone), the one its call window uses.

-- The clock the claim decides by: now(); in a test, the batchctl.now setting of a superuser's
-- session (SET batchctl.now = '2026-03-08 07:59-05'), so that a test can pin the time of a
-- claim as sweep(p_now) pins the sweep's. Any other session's setting is ignored: it cannot move
-- calling hours. (Read once per claim; unset, it costs a setting look-up.)
CREATE OR REPLACE FUNCTION batchctl.clock()
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN coalesce(pg_catalog.current_setting('batchctl.now', true), '') = '' THEN pg_catalog.now()
    WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER)
        THEN pg_catalog.current_setting('batchctl.now', true)::timestamptz
    ELSE pg_catalog.now()
END;

-- The keys of the rules that apply to an entry: its subdivisions, their countries, its country.
-- (SQL-standard bodies without SET, inlined into the claim's and the sweep's statements.)
CREATE OR REPLACE FUNCTION batchctl.entry_jurisdictions(p_country text, p_subdivisions text[])
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.array_append(
    p_subdivisions || ARRAY(SELECT pg_catalog.left(s, 2) FROM pg_catalog.unnest(p_subdivisions) s),
    p_country);

-- Whether a rule's days and hours allow the local time p_local.
CREATE OR REPLACE FUNCTION batchctl.hours_allow(
    p_days smallint[], p_hours batchctl.time_multirange, p_local timestamp)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN EXTRACT(isodow FROM p_local)::smallint = ANY (p_days)
   AND p_local::time OPERATOR(pg_catalog.<@) p_hours;

-- Whether every rule whose key is in p_keys (the rules that apply to an entry:
-- applied_jurisdictions, sql/029) allows dialling it at p_at in its lead's zone p_zone. The
-- clock there shows what p_at AT TIME ZONE says, also on the day of a clock change.
CREATE OR REPLACE FUNCTION batchctl.rules_allow(p_keys text[], p_zone text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN NOT EXISTS (
    SELECT FROM batchctl.jurisdiction_rules r
     WHERE r.jurisdiction = ANY (p_keys)
       AND NOT batchctl.hours_allow(r.days, r.hours, p_at AT TIME ZONE p_zone));

-- Whether p_at falls on one of the tenant's holidays p_holidays in the zone p_zone (the
-- recipient's local date).
CREATE OR REPLACE FUNCTION batchctl.on_holiday(p_holidays date[], p_zone text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.cardinality(p_holidays) > 0
   AND (p_at AT TIME ZONE p_zone)::date = ANY (p_holidays);

-- May an entry of a batch with p_options, whose lead's zone is p_zone, ruled by the rules
-- p_keys, of a tenant whose holidays are p_holidays, be dialled at p_at: the batch's dialling
-- period and call window, every rule's hours, and no holiday. The claim asks this, and then
-- the number's frequency caps and cool-offs (contact_wait, sql/029).
CREATE OR REPLACE FUNCTION batchctl.may_dial(
    p_options jsonb, p_zone text, p_keys text[], p_holidays date[], p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
RETURN batchctl.rules_allow(p_keys, p_zone, p_at)
   AND NOT batchctl.on_holiday(p_holidays, p_zone, p_at)
   AND batchctl.may_dial(p_options, p_zone, p_at);

-- The earliest moment at or after p_at at which the call window p_window (null: any time),
-- every rule whose key is in p_keys and the holidays p_holidays allow an entry (opens; null
-- when they never do together within the days looked at, e.g. a window on weekends only and a
-- rule on weekdays only), and what forbids p_at itself (rule; null when all allow it, or only
-- the window forbids it): 'holiday', else quiet_hours:<the most specific rule>, a subdivision
-- before a country. Day by day in the lead's local time, holidays skipped: the hours every
-- constraint allows that day (the intersection of their ranges: FR's 10:00-13:00 and
-- 14:00-20:00 with a window 09:00-18:00 leave 10:00-13:00 and 14:00-18:00), each converted
-- through the zone on that day (DST-exact: first_open_on). Only entries held back pay for this.
CREATE OR REPLACE FUNCTION batchctl.next_allowed(
    p_window jsonb, p_zone text, p_keys text[], p_holidays date[], p_at timestamptz,
    OUT opens timestamptz, OUT rule text)
LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    c_day_names constant text[] := '{mon,tue,wed,thu,fri,sat,sun}';
    c_whole_day constant time_multirange := '{[00:00,24:00]}';
    v_window constant boolean := p_window IS NOT NULL AND p_window <> 'null';
    v_local constant timestamp := p_at AT TIME ZONE p_zone;
    v_rule_hours time_multirange[];  -- per ISO weekday: the hours every rule allows
    v_day date;
    v_dow smallint;
    v_allowed time_multirange;
    v_range time_range;
BEGIN
    IF v_local::date = ANY (p_holidays) THEN
        rule := 'holiday';
    ELSE
        SELECT 'quiet_hours:' || r.jurisdiction INTO rule
          FROM jurisdiction_rules r
         WHERE r.jurisdiction = ANY (p_keys) AND NOT hours_allow(r.days, r.hours, v_local)
         ORDER BY length(r.jurisdiction) DESC, r.jurisdiction
         LIMIT 1;
    END IF;
    SELECT array_agg(coalesce(w.hours, c_whole_day) ORDER BY g.dow) INTO v_rule_hours
      FROM generate_series(1, 7) g (dow)
     CROSS JOIN LATERAL (
         SELECT range_intersect_agg(CASE WHEN g.dow = ANY (r.days) THEN r.hours
                                         ELSE '{}'::time_multirange END) AS hours
           FROM jurisdiction_rules r WHERE r.jurisdiction = ANY (p_keys)) w;
    -- Eight days besides the holidays: every weekday once, and today again after its hours.
    FOR i IN 0..8 + coalesce(cardinality(p_holidays), 0) LOOP
        v_day := v_local::date + i;
        CONTINUE WHEN v_day = ANY (p_holidays);
        v_dow := extract(isodow FROM v_day);
        v_allowed := v_rule_hours[v_dow] * CASE
            WHEN NOT v_window THEN c_whole_day
            WHEN (p_window -> 'days') ? c_day_names[v_dow]
                THEN time_multirange(time_range((p_window ->> 'start')::time,
                                                (p_window ->> 'end')::time))
            ELSE '{}' END;
        FOR v_range IN SELECT u FROM unnest(v_allowed) u ORDER BY lower(u) LOOP
            opens := first_open_on(v_day, lower(v_range), upper(v_range), p_zone, p_at);
            IF opens IS NOT NULL THEN
                RETURN;
            END IF;
        END LOOP;
    END LOOP;
    opens := NULL;
END
$$;

-- Which of the entries p_entry_ids may not be dialled at p_now, and until when: those still
-- queued and due that their call window, a rule of their jurisdictions or a holiday of their
-- tenant forbids (read once per kind of entry: window, zone, rules, holidays), or a frequency
-- cap or cool-off on their number (contact_wait, sql/029) holds; each under its tenant's
-- policy. opens: the moment all of these next allow the entry (next_allowed, from the moment
-- the number's limits lift); rule: what holds it (frequency:… or cooloff:… while a limit does,
-- else next_allowed's; null when only the call window does). The number's limits are read for
-- every entry when p_all_limits (the claim's entries, few), else only for those forbidden
-- anyway (the sweep's, every due entry: the claim finds the rest). The claim and the sweep
-- hold back what this returns (hold_back).
CREATE OR REPLACE FUNCTION batchctl.dial_holds(
    p_entry_ids uuid[], p_now timestamptz, p_all_limits boolean)
RETURNS TABLE (entry_id uuid, batch_id uuid, opens timestamptz, rule text)
LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH given AS MATERIALIZED (
        SELECT e.id, e.batch_id, e.tenant_id, e.to_phone, p.policy,
               b.options -> 'call_window' AS call_window, lead_zone(e.timezone, t.timezone) AS zone,
               applied_jurisdictions(p.policy, e.jurisdictions) AS keys, p.holidays, p.limited
          FROM batch_entries e
          JOIN batches b ON b.id = e.batch_id AND b.tenant_id = e.tenant_id
          JOIN tenants t ON t.id = e.tenant_id
         CROSS JOIN LATERAL (
             SELECT q.policy, policy_holidays(q.policy) AS holidays,
                    limits_contacts(q.policy) AS limited
               FROM (SELECT effective_policy(t.policy) AS policy) q
         ) p
         WHERE e.id = ANY (p_entry_ids) AND e.status = 'queued' AND e.next_attempt_at <= p_now
    ), kinds AS MATERIALIZED (
        -- What the window, the rules and the holidays say now, once per kind of entry.
        SELECT k.*, n.opens, n.rule
          FROM (SELECT DISTINCT g.call_window, g.zone, g.keys, g.holidays FROM given g) k
         CROSS JOIN LATERAL next_allowed(k.call_window, k.zone, k.keys, k.holidays, p_now) n
    ), verdicts AS MATERIALIZED (
        SELECT g.id, g.batch_id, g.call_window, g.zone, g.keys, g.holidays, k.opens, k.rule,
               w.until, w.rule AS wait_rule
          FROM given g
          JOIN kinds k ON k.call_window = g.call_window AND k.zone = g.zone AND k.keys = g.keys
                      AND k.holidays = g.holidays
          LEFT JOIN LATERAL (
              SELECT cw.until, cw.rule
                FROM contact_wait(g.tenant_id, g.to_phone, g.policy, g.keys, p_now) cw
               WHERE g.limited AND (p_all_limits OR k.opens IS DISTINCT FROM p_now)
               ORDER BY cw.until DESC, cw.rule
               LIMIT 1
          ) w ON true
         WHERE w.until IS NOT NULL OR k.opens IS DISTINCT FROM p_now
    )
    -- Held by a limit: from the moment it lifts, whatever the window, rules and holidays say.
    SELECT v.id, v.batch_id, n.opens, v.wait_rule
      FROM verdicts v
     CROSS JOIN LATERAL next_allowed(v.call_window, v.zone, v.keys, v.holidays, v.until) n
     WHERE v.until IS NOT NULL
    UNION ALL
    SELECT v.id, v.batch_id, v.opens, v.rule FROM verdicts v WHERE v.until IS NULL;
END
$$;

-- Entries held back (due, but not to be dialled now) wait for their next_allowed moment:
-- next_attempt_at moves there, so neither the claim nor the sweep looks at them again before,
-- and one held back by a rule gets an event naming it (its reason: quiet_hours:US-FL, holiday,
-- frequency:per_24h, cooloff:declined …; the entry stays queued). One that may never be dialled (opens null) is looked at again a day later.
-- Re-checked here under the caller's batch locks: only still-queued, still-due entries move.
-- Returns how many moved.
CREATE OR REPLACE FUNCTION batchctl.hold_back(
    p_entry_ids uuid[], p_opens timestamptz[], p_rules text[], p_now timestamptz)
RETURNS integer LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    WITH held AS (
        UPDATE batch_entries e
           SET next_attempt_at = coalesce(h.opens, p_now + interval '1 day'), updated_at = now()
          FROM unnest(p_entry_ids, p_opens, p_rules) AS h (id, opens, rule)
         -- Found by id only: status::text keeps the planner off entries_claimable, whose range
         -- scan it would repeat per id when its statistics lag behind a big intake (20k entries:
         -- 14 s instead of 0.3 s).
         WHERE e.id = h.id AND e.status::text = 'queued' AND e.next_attempt_at <= p_now
           AND coalesce(h.opens, 'infinity') > p_now
        RETURNING e.id, e.tenant_id, e.batch_id, h.rule
    ), logged AS (
        INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
        SELECT held.tenant_id, held.batch_id, 'entry', held.id, 'queued', 'queued', held.rule
          FROM held WHERE held.rule IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM held;
    RETURN v_count;
END
$$;

-- Scheduling: when an entry may be dialled. One predicate (may_dial: the batch's dialling
-- period, start_at to end_at, and the call window in the lead's local time) and one "when next"
-- (next_dial_at); the claim, the retry policy and the sweep ask these, nothing else. The
-- compliance rules (calling hours by jurisdiction, holidays) belong here too.

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

-- The first moment at or after p_now inside the call window, in the recipient's local time
-- (DST-correct: local wall-clock times are converted through the zone on each day; a start or
-- end the clock skips is the moment of the change, one it shows twice its first showing).
-- NULL window: any time, so p_now.
CREATE OR REPLACE FUNCTION batchctl.next_window_open(p_window jsonb, p_tz text, p_now timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_local timestamp := p_now AT TIME ZONE p_tz;
    v_start time;
    v_end time;
    v_day date;
    v_plain boolean;
    v_open timestamptz;
    v_close timestamptz;
BEGIN
    IF p_window IS NULL OR p_window = 'null' THEN
        RETURN p_now;
    END IF;
    v_start := (p_window ->> 'start')::time;
    v_end := (p_window ->> 'end')::time;
    FOR i IN 0..7 LOOP
        v_day := v_local::date + i;
        CONTINUE WHEN NOT (p_window -> 'days')
                          ? ('{mon,tue,wed,thu,fri,sat,sun}'::text[])[extract(isodow FROM v_day)::integer];
        -- The usual day: the zone keeps one offset from noon the day before to noon the day
        -- after, so every local time of the day is shown once and converts directly. Else
        -- (a clock change near) local_instant finds the boundaries.
        v_plain := ((v_day + 1) + time '12:00') AT TIME ZONE p_tz
                   - ((v_day - 1) + time '12:00') AT TIME ZONE p_tz = interval '48 hours';
        v_open := CASE WHEN v_plain THEN (v_day + v_start) AT TIME ZONE p_tz
                       ELSE local_instant(v_day + v_start, p_tz) END;
        IF p_now < v_open THEN
            RETURN v_open;
        END IF;
        v_close := CASE WHEN v_plain THEN (v_day + v_end) AT TIME ZONE p_tz
                        ELSE local_instant(v_day + v_end, p_tz) END;
        IF p_now < v_close THEN
            RETURN p_now;  -- inside today's window
        END IF;
    END LOOP;
    RETURN NULL;  -- unreachable: a validated window has at least one day
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

-- When, at or after p_at, an entry whose lead's zone is p_zone may next be dialled by its call
-- window (the dialling period is the batch's: the claim and the sweep look at it per batch).
CREATE OR REPLACE FUNCTION batchctl.next_dial_at(p_options jsonb, p_zone text, p_at timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
RETURN batchctl.next_window_open(p_options -> 'call_window', p_zone, p_at);

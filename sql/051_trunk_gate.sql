-- The trunks' part of the claim (docs/trunks.md): which trunk each call goes out on, when (its
-- pacing slot), with which caller ID, and which calls a trunk cannot take now.

-- The space between two call starts on a trunk of p_max_cps: 1/max_cps, plus a guard for the
-- daemons' and the network's jitter (40 ms a second's worth of calls: two daemons on a busy
-- 2-core machine dialled up to 27 ms off their slots), so that a call dialled a little late
-- never shares a one-second window with max_cps others at the carrier.
CREATE OR REPLACE FUNCTION batchctl.trunk_spacing(p_max_cps numeric)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => (1.04 OPERATOR(pg_catalog./) p_max_cps)::double precision);

-- How far ahead a claim gives slots: a claim hands out at most this much of a trunk's rate,
-- and the daemon waits for each call's slot (dial_at) before dialling.
CREATE OR REPLACE FUNCTION batchctl.pacing_lookahead()
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN interval '1 second';

-- The number's local prefix (the longest of its prefixes in phone_prefixes: a NANP area code,
-- else its calling code), as caller_ids.local_prefix holds it for local presence.
CREATE OR REPLACE FUNCTION batchctl.local_prefix(p_phone text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT p.prefix FROM batchctl.phone_prefixes p
         WHERE p.prefix OPERATOR(pg_catalog.=) ANY (ARRAY[
                   pg_catalog.substr(p_phone, 2, 1), pg_catalog.substr(p_phone, 2, 2),
                   pg_catalog.substr(p_phone, 2, 3), pg_catalog.substr(p_phone, 2, 4)])
         ORDER BY pg_catalog.length(p.prefix) DESC
         LIMIT 1);

-- The first moment of the day after p_at's in the zone p_zone.
CREATE OR REPLACE FUNCTION batchctl.next_local_day(p_zone text, p_at timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
RETURN ((p_at AT TIME ZONE p_zone)::date OPERATOR(pg_catalog.+) 1)::timestamp AT TIME ZONE p_zone;

-- The trunk a batch's calls go out on: its option trunk (an id, sql/058 trunk_ref), else its
-- tenant's default, the first trunk it made; null when the tenant has none. The one place that
-- says which trunk is the default (trunk_status asks it too).
CREATE OR REPLACE FUNCTION batchctl.call_trunk(p_tenant_id uuid, p_options jsonb)
RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce((p_options OPERATOR(pg_catalog.->>) 'trunk')::uuid,
                    (SELECT t.id FROM batchctl.trunks t
                      WHERE t.tenant_id OPERATOR(pg_catalog.=) p_tenant_id
                      ORDER BY t.created_at, t.id LIMIT 1));
END;

-- A trunk's calls in flight, as its max_concurrent counts them: entries claimed or dispatched
-- on it (entries_in_flight_by_trunk).
CREATE OR REPLACE FUNCTION batchctl.trunk_in_flight(p_trunk_id uuid)
RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT count(*)::integer FROM batchctl.batch_entries f
     WHERE f.trunk_id OPERATOR(pg_catalog.=) p_trunk_id
       AND f.status OPERATOR(pg_catalog.=) ANY (ARRAY['running', 'dispatched']::batchctl.entry_status[]);
END;

-- How many more calls the trunk p_trunk_id (call_trunk) can take in this claim, at most: none in back-off, else its max_concurrent less its
-- calls in flight, and the pacing slots left within the look-ahead. Null when the tenant has no
-- trunk (no limit). choose_claims offers no more of a batch's entries than this, so that a
-- trunk that cannot take them does not use up picks its tenant's other batches could have had;
-- trunk_grants then decides exactly, call by call.
CREATE OR REPLACE FUNCTION batchctl.trunk_room(p_tenant_id uuid, p_trunk_id uuid, p_now timestamptz)
RETURNS integer LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN t.backoff_until > p_now THEN 0 ELSE greatest(0, least(
               t.max_concurrent - trunk_in_flight(t.id),
               ceil(extract(epoch FROM p_now + pacing_lookahead() - greatest(t.next_start_at, p_now))
                    / extract(epoch FROM trunk_spacing(t.max_cps))))::integer) END
      FROM trunks t
     WHERE t.tenant_id = p_tenant_id AND t.id = p_trunk_id
$$;

-- For the entries p_entry_ids (the claim's choice, in its order; their batches locked by the
-- caller), the trunk each goes out on (its batch's option trunk, else its tenant's default;
-- none when the tenant has no trunk), and whether the trunk takes it now: not in back-off,
-- under max_concurrent, a pacing slot within pacing_lookahead (dial_at), and a caller ID from
-- the trunk's pool (local presence: the recipient's area code, then country; then the least
-- used today) under its daily cap, when the pool has any. reason: why not (trunk_backoff,
-- trunk_full, trunk_paced, caller_ids_at_cap). The trunks' slots and the caller IDs' counts of
-- the day move for the calls taken. A loop, in the claim's order: each call's slot and caller
-- ID depend on those given before it. The trunk rows are locked here (after the batches:
-- lock order).
CREATE OR REPLACE FUNCTION batchctl.trunk_grants(p_entry_ids uuid[], p_now timestamptz)
RETURNS SETOF batchctl.trunk_grant LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_grant trunk_grant;
    v_call record;
    v_trunk trunks;
    -- Per trunk met so far: its next slot and its calls in flight with those given here.
    v_state jsonb := '{}';
    v_next timestamptz;
    v_taken integer;
    v_caller text;
BEGIN
    FOR v_call IN
        SELECT e.id, e.tenant_id, e.to_phone, tn.timezone,
               call_trunk(e.tenant_id, b.options) AS trunk_id, i.ord
          FROM unnest(p_entry_ids) WITH ORDINALITY AS i (id, ord)
          JOIN batch_entries e ON e.id = i.id AND e.status = 'queued'
          JOIN batches b ON b.id = e.batch_id AND b.tenant_id = e.tenant_id
          JOIN tenants tn ON tn.id = e.tenant_id
         ORDER BY i.ord
    LOOP
        v_grant := ROW(v_call.id, v_call.trunk_id, NULL, NULL, NULL);
        IF v_call.trunk_id IS NULL THEN
            RETURN NEXT v_grant;
            CONTINUE;
        END IF;
        SELECT * INTO v_trunk FROM trunks t
         WHERE t.tenant_id = v_call.tenant_id AND t.id = v_call.trunk_id FOR UPDATE;
        IF NOT v_state ? v_trunk.id::text THEN
            v_state := v_state || jsonb_build_object(v_trunk.id::text, jsonb_build_object(
                'next', greatest(v_trunk.next_start_at, p_now),
                'in_flight', trunk_in_flight(v_trunk.id)));
        END IF;
        v_next := (v_state -> v_trunk.id::text ->> 'next')::timestamptz;
        v_taken := (v_state -> v_trunk.id::text ->> 'in_flight')::integer;
        IF v_trunk.backoff_until > p_now THEN
            v_grant.reason := 'trunk_backoff';
        ELSIF v_taken >= v_trunk.max_concurrent THEN
            v_grant.reason := 'trunk_full';
        ELSIF v_next >= p_now + pacing_lookahead() THEN
            v_grant.reason := 'trunk_paced';
        ELSE
            SELECT n.phone INTO v_caller
              FROM caller_ids n
              LEFT JOIN caller_id_days u
                ON u.tenant_id = n.tenant_id AND u.phone = n.phone
               AND u.day = (p_now AT TIME ZONE v_call.timezone)::date
             WHERE n.tenant_id = v_call.tenant_id AND n.trunk_id = v_trunk.id
               -- A number's cap is the least of its pool rows' (it may be in two trunks'
               -- pools): one count per number, one cap.
               AND coalesce(u.calls, 0) < ALL (SELECT c.daily_cap FROM caller_ids c
                                                WHERE c.tenant_id = n.tenant_id AND c.phone = n.phone
                                                  AND c.daily_cap IS NOT NULL)
             ORDER BY n.local_prefix IS NOT DISTINCT FROM local_prefix(v_call.to_phone) DESC,
                      n.country IS NOT DISTINCT FROM (SELECT p.country FROM phone_prefixes p
                                                       WHERE p.prefix = local_prefix(v_call.to_phone)) DESC,
                      coalesce(u.calls, 0), n.phone
             LIMIT 1;
            IF v_caller IS NULL AND EXISTS (SELECT FROM caller_ids n
                                             WHERE n.tenant_id = v_call.tenant_id
                                               AND n.trunk_id = v_trunk.id) THEN
                v_grant.reason := 'caller_ids_at_cap';
            ELSE
                v_grant.caller_id := v_caller;
                v_grant.dial_at := v_next;
                -- A call slotted at once (its trunk was idle) starts later than its slot by
                -- the claim's own time and the dispatch's, at worst tens of milliseconds more
                -- than the guard allows: the next slot is one more spacing away.
                v_state := v_state || jsonb_build_object(v_trunk.id::text, jsonb_build_object(
                    'next', v_next + trunk_spacing(v_trunk.max_cps)
                                     * CASE WHEN v_next <= p_now THEN 2 ELSE 1 END,
                    'in_flight', v_taken + 1));
                IF v_caller IS NOT NULL THEN
                    INSERT INTO caller_id_days AS u (tenant_id, phone, day, calls)
                    VALUES (v_call.tenant_id, v_caller, (p_now AT TIME ZONE v_call.timezone)::date, 1)
                    ON CONFLICT (tenant_id, phone, day) DO UPDATE SET calls = u.calls + 1;
                END IF;
            END IF;
        END IF;
        RETURN NEXT v_grant;
    END LOOP;
    UPDATE trunks t SET next_start_at = (s.value ->> 'next')::timestamptz
      FROM jsonb_each(v_state) s
     WHERE t.id = s.key::uuid
       AND (t.next_start_at IS NULL OR (s.value ->> 'next')::timestamptz > t.next_start_at);
END
$$;

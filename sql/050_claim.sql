-- The claim: which entries to dial now (claim_entries, and choose_claims for one tenant).

-- claim_entries' choice within one tenant, whose row the caller holds locked: up to p_want
-- entries to dial now, within the tenant's and its batches' free slots (an entry whose
-- unconfirmed dispatch holds a slot brings its own), one per number, round-robin over the
-- batches, the least recently served first. Step by step: the slots held by unconfirmed
-- dispatches (held), the tenant's free slots (tenant_free) and each running batch's
-- (batch_free), each batch's next entries that may be dialled now (candidates), one entry per
-- number (one_per_number), the order in which they get slots (ranked), the limits on their
-- numbers (checked), and the choice (chosen). Read in the snapshot of the caller's statement,
-- taken after the tenant's lock: the counters the previous holder of that lock committed are
-- seen. p_now: the claim's clock().
-- An entry is a candidate only when may_dial allows it (its batch's window, every calling-hours
-- rule of its jurisdictions, its tenant's holidays: sql/027), under its tenant's policy; it is
-- chosen only when no frequency cap or cool-off holds its number (contact_wait, sql/029). The
-- limits are read for the candidates in the order they get slots, as many as may be chosen
-- and a quarter more: one a limit holds gives its slot to the next, and comes back with
-- held = true, for the caller to hold back. The tenant's lock makes the caps exact: every claim
-- of the tenant's numbers waits for it, and sees the calls the previous holder's claims led to
-- (a claimed entry is running, so busy, until its call log is written in the transaction that
-- makes it dispatched).
CREATE OR REPLACE FUNCTION batchctl.choose_claims(
    p_tenant_id uuid, p_want integer, p_now timestamptz)
RETURNS TABLE (entry_id uuid, batch_id uuid, held boolean) LANGUAGE plpgsql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
-- (PL/pgSQL, whose plan of the statement is kept for the session: a SQL function's would be
-- made again on every call on PostgreSQL before 18.)
#variable_conflict use_column
DECLARE
    v_policy constant jsonb := (SELECT effective_policy(t.policy) FROM tenants t WHERE t.id = p_tenant_id);
    v_holidays constant date[] := policy_holidays(v_policy);
    v_limits_contacts constant boolean := limits_contacts(v_policy);
    -- Candidates read beyond those that may be chosen, to take the slots of any a limit holds:
    -- more would cost a probe each on every claim; fewer held ones leave slots to the next.
    c_spare constant integer := greatest(4, p_want / 4);
BEGIN
    RETURN QUERY
    WITH held AS (
        -- Queued entries whose dispatch may be live at LiveKit keep their call slot (sql/032):
        -- they count as in flight, and a claim of them (to settle the dispatch) needs no free
        -- slot. Few rows: read through entries_holding_slots.
        SELECT h.id, h.batch_id, h.to_phone, h.timezone, h.next_attempt_at, h.jurisdictions
          FROM batch_entries h
         WHERE h.tenant_id = p_tenant_id AND h.status = 'queued' AND h.dispatch_unconfirmed
           AND h.slot_held_until > p_now
    ), tenant_free AS (
        SELECT t.timezone,
               t.max_concurrent_calls - (SELECT count(*) FROM held) - coalesce((
                   SELECT sum(b.running_count + b.dispatched_count) FROM batches b
                    WHERE b.tenant_id = p_tenant_id AND b.finished_at IS NULL), 0) AS free
          FROM tenants t
         WHERE t.id = p_tenant_id
    ), batch_free AS (
        SELECT b.id, b.created_at, b.last_claimed_at, b.options, tf.timezone,
               tf.free AS tenant_free,
               CASE WHEN b.options ->> 'dispatch_mode' = 'wave' AND f.in_flight > 0 THEN 0
                    -- No more than its trunk can take now (sql/051).
                    ELSE least((b.options ->> 'wave_size')::integer - f.in_flight,
                               trunk_room(p_tenant_id, call_trunk(p_tenant_id, b.options), p_now))
               END AS free
          FROM batches b CROSS JOIN tenant_free tf
         CROSS JOIN LATERAL (
             SELECT b.running_count + b.dispatched_count
                    + (SELECT count(*) FROM held h WHERE h.batch_id = b.id) AS in_flight
         ) f
         WHERE b.tenant_id = p_tenant_id
           AND b.status = 'running' AND b.queued_count > 0
           AND dialling_open(b.options, p_now)
    ), front AS (
        -- Each batch's next due entries, as many as it may dial, with may_dial's verdict: an
        -- entry it forbids is held back by the caller (it comes back held), not read past on
        -- every claim. Busy numbers are read past: they free up by themselves.
        SELECT c.id, c.to_phone, c.keys, c.allowed, bf.id AS batch_id, bf.tenant_free,
               bf.created_at, bf.last_claimed_at, c.rank_in_batch
          FROM batch_free bf
         CROSS JOIN LATERAL (
             SELECT e.id, e.to_phone, k.keys,
                    may_dial(bf.options, lead_zone(e.timezone, bf.timezone), k.keys, v_holidays,
                             p_now) AS allowed,
                    row_number() OVER (ORDER BY e.next_attempt_at, e.entry_index) AS rank_in_batch
               FROM batch_entries e
              CROSS JOIN LATERAL (
                  SELECT applied_jurisdictions(v_policy, e.jurisdictions) AS keys) k
              -- (No tenant_id here: it would draw the planner to the batch's whole-history
              -- unique index instead of reading entries_claimable in order up to the LIMIT.)
              WHERE e.batch_id = bf.id AND e.status = 'queued' AND e.next_attempt_at <= p_now
                AND NOT (e.dispatch_unconfirmed AND e.slot_held_until > p_now)  -- held: below
                -- Never two live calls to one number: it may sit in several of the tenant's
                -- batches, and a queued entry whose last claim may have dialled keeps it busy
                -- too. (The condition implies entries_busy_numbers' predicate: a probe of
                -- live rows.)
                AND NOT EXISTS (SELECT 1 FROM batch_entries busy
                                 WHERE busy.tenant_id = e.tenant_id AND busy.to_phone = e.to_phone
                                   AND (busy.status IN ('running', 'dispatched')
                                        OR (busy.status = 'queued' AND busy.dispatch_unconfirmed
                                            AND NOT e.dispatch_unconfirmed)))
              ORDER BY e.next_attempt_at, e.entry_index
              LIMIT greatest(0, least(bf.free, bf.tenant_free, p_want))
         ) c
         WHERE bf.free > 0 AND bf.tenant_free > 0
    ), candidates AS (
        SELECT f.id, f.to_phone, f.keys, f.batch_id, f.tenant_free, f.created_at,
               f.last_claimed_at, f.rank_in_batch, false AS holds_slot
          FROM front f WHERE f.allowed
        UNION ALL
        SELECT h.id, h.to_phone, applied_jurisdictions(v_policy, h.jurisdictions), bf.id,
               bf.tenant_free, bf.created_at, bf.last_claimed_at, 0, true
          FROM held h JOIN batch_free bf ON bf.id = h.batch_id
         WHERE h.next_attempt_at <= p_now
           AND may_dial(bf.options, lead_zone(h.timezone, bf.timezone),
                        applied_jurisdictions(v_policy, h.jurisdictions), v_holidays, p_now)
    ), one_per_number AS (
        SELECT DISTINCT ON (c.to_phone) c.*
          FROM candidates c
         ORDER BY c.to_phone, c.rank_in_batch, c.created_at
    ), ranked AS (
        SELECT c.id, c.batch_id, c.to_phone, c.keys, c.tenant_free, c.holds_slot,
               row_number() OVER (PARTITION BY c.holds_slot
                                  ORDER BY c.rank_in_batch, c.last_claimed_at NULLS FIRST, c.created_at,
                                           c.batch_id) AS rank_in_tenant
          FROM one_per_number c
    ), checked AS MATERIALIZED (
        SELECT r.*, v_limits_contacts AND EXISTS (
                   SELECT FROM contact_wait(p_tenant_id, r.to_phone, v_policy, r.keys, p_now)) AS capped
          FROM (SELECT * FROM ranked r
                 WHERE r.holds_slot OR r.rank_in_tenant <= c_spare + least(r.tenant_free, p_want)
                 ORDER BY r.holds_slot DESC, r.rank_in_tenant
                 LIMIT c_spare + p_want) r
    ), chosen AS (
        SELECT r.id, r.batch_id
          FROM (SELECT c.*, row_number() OVER (PARTITION BY c.holds_slot ORDER BY c.rank_in_tenant)
                            AS rank_free
                  FROM checked c WHERE NOT c.capped) r
         WHERE r.holds_slot OR r.rank_free <= r.tenant_free
         ORDER BY r.holds_slot DESC, r.rank_free
         LIMIT p_want
    )
    SELECT c.id, c.batch_id, false FROM chosen c
    UNION ALL
    SELECT c.id, c.batch_id, true FROM checked c WHERE c.capped
    UNION ALL
    SELECT f.id, f.batch_id, true FROM front f WHERE NOT f.allowed;
END
$$;

-- Hands out entries to dial now, marked running with a lease. Caps: in flight (running +
-- dispatched) never exceeds the tenant's max_concurrent_calls nor the batch's wave_size; in
-- 'wave' mode a batch's next wave starts only when its current one is all terminal.
-- Concurrent claimers lock the tenants they serve (SKIP LOCKED), so two of them never fill the
-- same tenant's free slots; the counters they read are committed by the previous holder.
-- Fair: each batch contributes its next entries in order, and slots go round-robin (first entry
-- of every batch, then the second …), the least recently served batch first. Tenants are taken
-- in random order, as few as fill the claim: across claims every tenant with work comes first as
-- often as any other, and its max_concurrent_calls bounds what one claim can give it.
-- dispatch_unconfirmed: a claim of this attempt came back unacknowledged before, so LiveKit may
-- already have its room (the daemon looks before it dispatches; for any other claim it need not).
-- Such an entry keeps its call slot for a while (sql/032): it is claimed without a free one.
-- Compliance (docs/compliance.md): an entry its call window, a rule of its jurisdictions, its
-- tenant's holidays, or a frequency cap or cool-off on its number forbids now is not claimed,
-- and, in the same transaction, waits for the earliest moment all of them allow (choose_claims
-- finds them among each batch's next entries, dial_holds says until when and why, hold_back
-- moves their next_attempt_at and writes an event naming the rule). A number on the tenant's
-- do-not-call list is never dialled: an entry added while its number was being put on the list
-- (a race the list's own check cannot see) is cancelled ('dnc') instead of claimed.
-- The claim runs by clock(): now(), or a test's pinned time.
CREATE OR REPLACE FUNCTION batchctl.claim_entries(
    p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 60)
RETURNS TABLE (entry_id uuid, batch_id uuid, tenant_id uuid, to_phone text, lead_name text,
               context jsonb, attempt integer, room_name text, options jsonb,
               dispatch_unconfirmed boolean, livekit_trunk_id text, caller_id text,
               dial_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    -- Tenants that look like they have work and a free slot (an unlocked read of the counters,
    -- re-checked below), in random order.
    c_tenants CURSOR FOR
        SELECT t.id
          FROM (SELECT b.tenant_id
                  FROM batches b JOIN tenants tc ON tc.id = b.tenant_id
                 WHERE b.finished_at IS NULL
                 GROUP BY b.tenant_id, tc.max_concurrent_calls
                HAVING sum(b.queued_count) FILTER (WHERE b.status = 'running') > 0
                   AND sum(b.running_count + b.dispatched_count) < tc.max_concurrent_calls) w
          JOIN tenants t ON t.id = w.tenant_id
         ORDER BY random()
           FOR NO KEY UPDATE OF t SKIP LOCKED;
    v_now constant timestamptz := clock();
    v_tenant_id uuid;
    v_entry_ids uuid[] := '{}';
    v_batch_ids uuid[] := '{}';
    v_check_ids uuid[] := '{}';  -- entries forbidden now, to be held back
    v_held_ids uuid[] := '{}';
    v_held_batches uuid[] := '{}';
    v_held_opens timestamptz[] := '{}';
    v_held_rules text[] := '{}';
    v_grants trunk_grant[];
BEGIN
    PERFORM check_claim(p_worker, p_limit, p_lease_seconds);

    -- Lock tenants one at a time (a cursor fetch locks one row), skipping those another claimer
    -- holds, and take each one's entries (choose_claims) until the claim is full: concurrent
    -- claimers serve different tenants side by side instead of one locking them all and the rest
    -- coming back empty, and a claim reads the candidates of the few tenants it needs. Each
    -- choice names one tenant (routable when distributed by it); then the chosen entries'
    -- batches are locked, and the entries marked running.
    OPEN c_tenants;
    LOOP
        FETCH c_tenants INTO v_tenant_id;
        EXIT WHEN NOT FOUND;
        SELECT v_entry_ids || coalesce(array_agg(c.entry_id) FILTER (WHERE NOT c.held), '{}'),
               v_batch_ids || coalesce(array_agg(DISTINCT c.batch_id) FILTER (WHERE NOT c.held), '{}'),
               v_check_ids || coalesce(array_agg(c.entry_id) FILTER (WHERE c.held), '{}')
          INTO v_entry_ids, v_batch_ids, v_check_ids
          FROM choose_claims(v_tenant_id, p_limit - cardinality(v_entry_ids), v_now) c;
        EXIT WHEN cardinality(v_entry_ids) >= p_limit;
    END LOOP;
    CLOSE c_tenants;
    IF cardinality(v_entry_ids) = 0 AND cardinality(v_check_ids) = 0 THEN
        RETURN;
    END IF;
    -- Until when the entries their window, a rule, a holiday or a limit forbid wait, and why.
    IF cardinality(v_check_ids) > 0 THEN
        SELECT coalesce(array_agg(h.entry_id), '{}'), coalesce(array_agg(DISTINCT h.batch_id), '{}'),
               coalesce(array_agg(h.opens), '{}'), coalesce(array_agg(h.rule), '{}')
          INTO v_held_ids, v_held_batches, v_held_opens, v_held_rules
          FROM dial_holds(v_check_ids, v_now, true) h;
    END IF;

    -- The batches of the entries claimed and held back, locked at once in id order (sql/020).
    PERFORM lock_batches(v_batch_ids || v_held_batches);
    PERFORM set_reason('claim_entries: ' || p_worker);
    PERFORM hold_back(v_held_ids, v_held_opens, v_held_rules, v_now);
    UPDATE batch_entries e
       SET status = 'cancelled', last_error = 'dnc', updated_at = now()
      FROM dnc_numbers d
     WHERE e.id = ANY (v_entry_ids) AND e.status = 'queued'
       AND d.tenant_id = e.tenant_id AND d.phone = e.to_phone;
    -- The trunks' part (sql/051): each call's trunk, slot and caller ID; a call its trunk cannot
    -- take now stays queued for the next claim, one whose caller IDs are all at their daily cap
    -- waits for the next day in its tenant's zone.
    v_grants := ARRAY(SELECT g FROM trunk_grants(v_entry_ids, v_now) g);
    PERFORM hold_back(array_agg(g.entry_id), array_agg(next_local_day(t.timezone, v_now)),
                      array_agg(g.reason), v_now)
       FROM unnest(v_grants) g
       JOIN batch_entries e ON e.id = g.entry_id
       JOIN tenants t ON t.id = e.tenant_id
      WHERE g.reason = 'caller_ids_at_cap'
     HAVING count(*) > 0;
    -- Re-checked under the batch locks: a pause or cancel that committed meanwhile wins.
    RETURN QUERY
    UPDATE batch_entries e
       SET status = 'running', claimed_by = p_worker,
           lease_expires_at = v_now + make_interval(secs => p_lease_seconds),
           trunk_id = g.trunk_id, caller_id = g.caller_id, dial_at = g.dial_at, updated_at = now()
      FROM unnest(v_grants) AS g
      JOIN batches b ON b.id = ANY (v_batch_ids) AND b.status = 'running'
      LEFT JOIN trunks t ON t.id = g.trunk_id
     WHERE e.id = g.entry_id AND g.reason IS NULL AND e.status = 'queued' AND e.batch_id = b.id
       AND e.tenant_id = b.tenant_id
    RETURNING e.id, e.batch_id, e.tenant_id, e.to_phone, e.lead_name, e.context, e.attempts + 1,
              batchctl.room_name(e.id, e.attempts + 1), b.options, e.dispatch_unconfirmed,
              t.livekit_trunk_id, g.caller_id, g.dial_at;
END
$$;

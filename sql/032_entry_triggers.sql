-- Entry statement triggers: one pass per statement over the transition tables, so a claim of 50
-- entries costs one guard query, one event insert, one counter update per batch and one NOTIFY
-- per batch, not 50 of each.

CREATE OR REPLACE FUNCTION batchctl.entries_after_update()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_bad record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_entries) THEN
        RETURN NULL;  -- statement triggers fire for zero-row updates too (an idle sweep)
    END IF;
    -- The guard: only transitions of the state machine, and a terminal entry never changes.
    -- (No LIMIT: it would steer the planner to a nested loop over both transition tables.)
    SELECT o.id, o.status AS from_status, n.status AS to_status INTO v_bad
      FROM old_entries o JOIN new_entries n USING (id)
     WHERE (o.status <> n.status AND NOT entry_transition_allowed(o.status, n.status))
        OR (o.status = n.status AND is_terminal(o.status) AND o IS DISTINCT FROM n);
    IF FOUND THEN
        RAISE EXCEPTION 'entry %: cannot go from % to %', v_bad.id, v_bad.from_status, v_bad.to_status
            USING ERRCODE = 'BC003',
                  HINT = CASE WHEN is_terminal(v_bad.from_status)
                              THEN 'a terminal entry never changes' END;
    END IF;

    INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
    SELECT n.tenant_id, n.batch_id, 'entry', n.id, o.status, n.status,
           concat_ws(': ', current_reason(),
                     CASE WHEN n.last_error IS DISTINCT FROM o.last_error THEN n.last_error END)
      FROM old_entries o JOIN new_entries n USING (id)
     WHERE o.status <> n.status;

    UPDATE batches b
       SET queued_count = b.queued_count + d.queued,
           running_count = b.running_count + d.running,
           dispatched_count = b.dispatched_count + d.dispatched,
           completed_count = b.completed_count + d.completed,
           failed_count = b.failed_count + d.failed,
           declined_count = b.declined_count + d.declined,
           cancelled_count = b.cancelled_count + d.cancelled,
           -- Claims raise running: remember when the batch was last served, for fair claims.
           last_claimed_at = CASE WHEN d.running > 0 THEN clock_timestamp() ELSE b.last_claimed_at END
      FROM (SELECT n.tenant_id, n.batch_id,
                   count(*) FILTER (WHERE n.status = 'queued') - count(*) FILTER (WHERE o.status = 'queued') AS queued,
                   count(*) FILTER (WHERE n.status = 'running') - count(*) FILTER (WHERE o.status = 'running') AS running,
                   count(*) FILTER (WHERE n.status = 'dispatched') - count(*) FILTER (WHERE o.status = 'dispatched') AS dispatched,
                   count(*) FILTER (WHERE n.status = 'completed') AS completed,
                   count(*) FILTER (WHERE n.status = 'failed') AS failed,
                   count(*) FILTER (WHERE n.status = 'declined') AS declined,
                   count(*) FILTER (WHERE n.status = 'cancelled') AS cancelled
              FROM old_entries o JOIN new_entries n USING (id)
             WHERE o.status <> n.status
             GROUP BY n.tenant_id, n.batch_id) d
     WHERE b.id = d.batch_id AND b.tenant_id = d.tenant_id;

    -- A claim that may have dialled and ends without a call (cancelled while claimed, or ended
    -- while its dispatch was unconfirmed): LiveKit may have its room, hung up like a live call's.
    PERFORM request_room_hangups(array_agg(n.id))
       FROM old_entries o JOIN new_entries n USING (id)
      WHERE is_terminal(n.status) AND NOT is_terminal(o.status)
        AND ((o.status = 'running' AND n.status = 'cancelled') OR n.dispatch_unconfirmed)
     HAVING count(*) > 0;

    -- Wake the dispatcher where work became claimable or a call slot was freed.
    PERFORM pg_notify('batchctl_dispatch',
                      json_build_object('tenant_id', x.tenant_id, 'batch_id', x.batch_id)::text)
       FROM (SELECT DISTINCT n.tenant_id, n.batch_id
               FROM old_entries o JOIN new_entries n USING (id)
              WHERE o.status <> n.status
                AND (n.status = 'queued' OR o.status IN ('running', 'dispatched'))
                AND n.status NOT IN ('running', 'dispatched')) x;
    RETURN NULL;
END
$$;

-- What may never go back to the queue, whichever path re-queues it (lease expiry, dispatch
-- retry, pickup retry, retry policy): a number now on the do-not-call list, an entry whose
-- cancel was asked for while its call was live, an entry of a stopped batch. It ends cancelled.
-- A claim that comes back with its dispatch unconfirmed (the function re-queueing it says so:
-- a lease that ran out, a CreateDispatch whose answer was lost) may have a call live at
-- LiveKit: its number stays busy until a claim of it is acknowledged, and it keeps its call
-- slot (slot_held_until, read by claim_entries) until a claim of it settles the dispatch or
-- the batch's pickup timeout has passed since it first came back unconfirmed.
CREATE OR REPLACE FUNCTION batchctl.entries_before_requeue()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_batch_status batch_status;
    v_pickup_timeout integer;
BEGIN
    SELECT status, (options ->> 'pickup_timeout_s')::integer INTO v_batch_status, v_pickup_timeout
      FROM batches WHERE id = NEW.batch_id AND tenant_id = NEW.tenant_id;
    NEW.slot_held_until := CASE WHEN NEW.dispatch_unconfirmed
        THEN coalesce(OLD.slot_held_until, now() + make_interval(secs => v_pickup_timeout)) END;
    IF is_terminal(v_batch_status) THEN
        NEW.last_error := 'batch_' || v_batch_status;
    ELSIF NEW.cancel_requested THEN
        NEW.last_error := 'cancelled';
    ELSIF EXISTS (SELECT 1 FROM dnc_numbers WHERE tenant_id = NEW.tenant_id AND phone = NEW.to_phone) THEN
        NEW.last_error := 'dnc';
    ELSE
        RETURN NEW;
    END IF;
    NEW.status := 'cancelled';
    NEW.claimed_by := NULL;
    NEW.lease_expires_at := NULL;
    NEW.slot_held_until := NULL;
    RETURN NEW;
END
$$;

-- Entries leave only with their batch (ON DELETE CASCADE, which runs at trigger depth > 1) or
-- through prune() (sql/065), which deletes those of finished batches a few at a time. Deleting
-- entries of a live batch would pull them from under its calls and its completion.
CREATE OR REPLACE FUNCTION batchctl.entries_before_delete()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_trigger_depth() = 1 AND NOT pruning() THEN
        RAISE EXCEPTION 'batch entries are deleted only with their batch or by prune()'
            USING ERRCODE = 'BC003';
    END IF;
    RETURN NULL;
END
$$;

-- Entries inserted join their batch's counters and total; entries deleted leave them, so
-- "counters = real counts" holds at every commit, also while prune() takes a big batch apart over
-- several calls (after a batch's own delete cascades here its row is gone: nothing to update).
-- Both triggers name their transition table changed_entries.
CREATE OR REPLACE FUNCTION batchctl.entries_counted()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    UPDATE batches b
       SET total = b.total + v_sign * d.n,
           queued_count = b.queued_count + v_sign * d.queued,
           running_count = b.running_count + v_sign * d.running,
           dispatched_count = b.dispatched_count + v_sign * d.dispatched,
           completed_count = b.completed_count + v_sign * d.completed,
           failed_count = b.failed_count + v_sign * d.failed,
           declined_count = b.declined_count + v_sign * d.declined,
           cancelled_count = b.cancelled_count + v_sign * d.cancelled
      FROM (SELECT tenant_id, batch_id, count(*) AS n,
                   count(*) FILTER (WHERE status = 'queued') AS queued,
                   count(*) FILTER (WHERE status = 'running') AS running,
                   count(*) FILTER (WHERE status = 'dispatched') AS dispatched,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'declined') AS declined,
                   count(*) FILTER (WHERE status = 'cancelled') AS cancelled
              FROM changed_entries GROUP BY tenant_id, batch_id) d
     WHERE b.id = d.batch_id AND b.tenant_id = d.tenant_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER entries_after_insert AFTER INSERT ON batchctl.batch_entries
    REFERENCING NEW TABLE AS changed_entries
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.entries_counted();
CREATE OR REPLACE TRIGGER entries_after_update AFTER UPDATE ON batchctl.batch_entries
    REFERENCING OLD TABLE AS old_entries NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.entries_after_update();
CREATE OR REPLACE TRIGGER entries_before_requeue BEFORE UPDATE ON batchctl.batch_entries
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION batchctl.entries_before_requeue();
CREATE OR REPLACE TRIGGER entries_before_delete BEFORE DELETE ON batchctl.batch_entries
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.entries_before_delete();
CREATE OR REPLACE TRIGGER entries_after_delete AFTER DELETE ON batchctl.batch_entries
    REFERENCING OLD TABLE AS changed_entries
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.entries_counted();

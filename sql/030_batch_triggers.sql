-- Batch row triggers: transition guard, automatic completion, finish-once, report outbox.
-- Completion is decided here, on the batch row under its row lock, from the counters the entry
-- triggers keep: concurrent final reports serialise on this row, and exactly one of them sees
-- the last pending entry go.

-- True only while prune() (sql/065_retention.sql) runs: its SET clause turns the setting on for
-- the call and back off when it returns. It lets prune delete events and single entries, and
-- take those entries out of a finished batch's counters.
CREATE OR REPLACE FUNCTION batchctl.pruning()
RETURNS boolean LANGUAGE sql STABLE
SET search_path = batchctl, pg_catalog, pg_temp
AS $$ SELECT coalesce(current_setting('batchctl.pruning', true), '') = 'on' $$;

CREATE OR REPLACE FUNCTION batchctl.batches_before_update()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_pending integer := NEW.queued_count + NEW.running_count + NEW.dispatched_count;
    -- Watchers get at most one batchctl_progress per batch in this interval (a status change or
    -- the finish always notifies): a busy batch changes its counters hundreds of times a
    -- second, and notifying commits go one at a time (bench/RESULTS.md). Watchers re-read on
    -- their own timer too (SPEC §6: notifications only wake), so a change is late, never lost.
    v_progress_interval CONSTANT interval := '100 milliseconds';
BEGIN
    IF OLD.finished_at IS NOT NULL THEN
        -- prune() takes the entries it deletes out of the counters (entries_counted), so
        -- they stay true for what is left; nothing else of a finished batch ever changes.
        DECLARE
            v_counters CONSTANT text[] := '{total, queued_count, running_count, dispatched_count,
                                            completed_count, failed_count, declined_count,
                                            cancelled_count}';
        BEGIN
            IF pruning() AND to_jsonb(NEW) - v_counters = to_jsonb(OLD) - v_counters THEN
                RETURN NEW;
            END IF;
        END;
        RAISE EXCEPTION 'batch % finished at % and cannot change', OLD.id, OLD.finished_at
            USING ERRCODE = 'BC003';
    END IF;
    IF NEW.status <> OLD.status AND NOT batch_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'batch %: cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'BC003';
    END IF;
    IF NEW.status IN ('running', 'paused') AND v_pending = 0 THEN
        NEW.status := 'completed';
    END IF;
    IF NEW.status = 'running' AND NEW.started_at IS NULL THEN
        NEW.started_at := now();
    END IF;
    IF is_terminal(NEW.status) AND v_pending = 0 THEN
        NEW.finished_at := now();
    END IF;
    NEW.updated_at := now();
    IF NEW.status <> OLD.status OR NEW.finished_at IS NOT NULL OR OLD.progress_notified_at IS NULL
       OR OLD.progress_notified_at <= clock_timestamp() - v_progress_interval THEN
        NEW.progress_notified_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.batches_after_insert()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
    VALUES (NEW.tenant_id, NEW.id, 'batch', NEW.id, NULL, NEW.status, current_reason());
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION batchctl.batches_after_update()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_report_to text[];
BEGIN
    IF NEW.status <> OLD.status THEN
        INSERT INTO events (tenant_id, batch_id, object, object_id, from_status, to_status, reason)
        VALUES (NEW.tenant_id, NEW.id, 'batch', NEW.id, OLD.status, NEW.status,
                CASE WHEN NEW.status = 'completed' AND OLD.status IN ('running', 'paused', 'pending')
                     THEN 'every entry is terminal' ELSE current_reason() END);
        IF NEW.status = 'running' THEN
            PERFORM pg_notify('batchctl_dispatch',
                json_build_object('tenant_id', NEW.tenant_id, 'batch_id', NEW.id)::text);
        END IF;
    END IF;
    IF OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL THEN
        -- Exactly once: finished_at is set once (the BEFORE trigger refuses changes after it)
        -- and reports.batch_id is the primary key.
        SELECT array_agg(a #>> '{}') INTO v_report_to FROM jsonb_array_elements(NEW.options -> 'report_to') a;
        INSERT INTO reports (batch_id, tenant_id, status, recipients, next_attempt_at)
        VALUES (NEW.id, NEW.tenant_id,
                CASE WHEN v_report_to IS NULL THEN 'skipped' ELSE 'pending' END::report_status,
                coalesce(v_report_to, '{}'),
                now() + make_interval(secs => (NEW.options ->> 'report_delay_s')::integer));
        IF v_report_to IS NOT NULL THEN
            PERFORM pg_notify('batchctl_report', NEW.id::text);
        END IF;
    END IF;
    IF NEW.progress_notified_at IS DISTINCT FROM OLD.progress_notified_at THEN
        PERFORM pg_notify('batchctl_progress', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER batches_before_update BEFORE UPDATE ON batchctl.batches
    FOR EACH ROW EXECUTE FUNCTION batchctl.batches_before_update();
CREATE OR REPLACE TRIGGER batches_after_insert AFTER INSERT ON batchctl.batches
    FOR EACH ROW EXECUTE FUNCTION batchctl.batches_after_insert();
CREATE OR REPLACE TRIGGER batches_after_update AFTER UPDATE ON batchctl.batches
    FOR EACH ROW EXECUTE FUNCTION batchctl.batches_after_update();

-- events is an append-only audit: UPDATE and TRUNCATE are always refused, and DELETE is too,
-- except by prune(), which deletes a pruned object's events with the object.
CREATE OR REPLACE FUNCTION batchctl.events_append_only()
RETURNS trigger LANGUAGE plpgsql
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pruning() THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP USING ERRCODE = 'BC003';
END
$$;

CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON batchctl.events
    FOR EACH STATEMENT EXECUTE FUNCTION batchctl.events_append_only();

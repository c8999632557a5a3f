-- What the batch report reads (batchctl/report/), usable from psql too. The views and
-- report_summary run with the caller's rights (security_invoker / SECURITY INVOKER), so a
-- tenant session sees only its own rows through row-level security.

-- One row per entry with its last call: the report's Calls sheet.
-- `analysis` is always an object or null: an agent that sent a bare value gets {"analysis": v}.
-- consent_at / consent_source: the consent evidence the lead came with (migrations/0019);
-- caller_id: the number the last call was placed from, and carrier_refusals: the entry's calls
-- its carrier refused for capacity, which used no attempt (migrations/0022). Each last, as
-- CREATE OR REPLACE VIEW may only add columns at the end.
CREATE OR REPLACE VIEW batchctl.report_entries WITH (security_invoker = true) AS
SELECT e.batch_id, e.tenant_id, e.id AS entry_id, e.entry_index, e.to_phone, e.lead_name,
       e.lead_id, e.context, e.status::text AS status, e.outcome::text AS outcome, e.attempts,
       e.retry_count, e.last_error, c.id AS last_call_id, c.ended_at AS last_call_ended_at,
       c.duration_seconds, c.detail ->> 'summary' AS summary,
       CASE coalesce(jsonb_typeof(c.detail -> 'analysis'), 'null')
           WHEN 'object' THEN c.detail -> 'analysis'
           WHEN 'null' THEN NULL
           ELSE jsonb_build_object('analysis', c.detail -> 'analysis')
       END AS analysis,
       e.consent_at, e.consent_source, c.caller_id, e.carrier_refusals
  FROM batchctl.batch_entries e
  LEFT JOIN batchctl.call_logs c ON c.tenant_id = e.tenant_id AND c.id = e.call_log_id;

-- One row per call log (dial attempt): the report's Attempts sheet.
-- trunk (its name, as it is now: a reader knows trunks by name) and caller_id: what the call
-- went out with (migrations/0020), null for a tenant without trunks. Last, as CREATE OR
-- REPLACE VIEW may only add columns at the end.
CREATE OR REPLACE VIEW batchctl.report_calls WITH (security_invoker = true) AS
SELECT c.batch_id, c.tenant_id, c.entry_id, e.entry_index, e.to_phone, e.lead_name,
       c.id AS call_log_id, c.attempt, c.status::text AS status, c.room_name, c.dispatch_id,
       c.started_at, c.answered_at, c.ended_at, c.duration_seconds,
       c.detail ->> 'error' AS error, c.detail ->> 'summary' AS summary, c.detail,
       t.name AS trunk, c.caller_id
  FROM batchctl.call_logs c
  JOIN batchctl.batch_entries e ON e.tenant_id = c.tenant_id AND e.id = c.entry_id
  -- LEFT: a call without a trunk is an attempt all the same.
  LEFT JOIN batchctl.trunks t ON t.tenant_id = c.tenant_id AND t.id = c.trunk_id;

-- The figures of a batch's report in one row, read in the same snapshot as the sheets:
-- counters (as batch_status), entries per last call status (`outcomes`, "none" = never called),
-- call logs per attempt number, call durations (of calls that have one), and the keys of the
-- entries' last call analysis and of their leads' context (the Calls sheet's columns): each
-- most used first, then by name, at most 1000 (the sheet shows fewer, and needs one more than
-- it shows to know there are more). `unsplit_contexts` counts the contexts the report may have
-- to show whole, as text, because its client may not decode them: not an object, nested 100
-- levels deep, or holding an integer of more than 4,300 digits (Python refuses about 1,000
-- levels, and such integers), all stored before the intake bounds of sql/022 (32 levels).
-- BC002 when the caller cannot see the batch.
CREATE OR REPLACE FUNCTION batchctl.report_summary(p_batch_id uuid)
RETURNS TABLE (
    batch_id uuid, tenant_id uuid, tenant_name text, status text, options jsonb,
    cancel_reason text, created_at timestamptz, started_at timestamptz, finished_at timestamptz,
    as_of timestamptz, total integer, queued integer, running integer, dispatched integer,
    completed integer, failed integer, declined integer, cancelled integer, duplicates integer,
    dnc_skipped integer, outcomes jsonb, calls integer, calls_per_attempt jsonb,
    median_duration_s double precision, p90_duration_s double precision,
    total_duration_s numeric, analysis_keys text[], context_keys text[], unsplit_contexts integer)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT b.id, b.tenant_id, t.name, b.status::text, b.options, b.cancel_reason, b.created_at,
           b.started_at, b.finished_at, now(), b.total, b.queued_count, b.running_count,
           b.dispatched_count, b.completed_count, b.failed_count, b.declined_count,
           b.cancelled_count, b.duplicates, b.dnc_skipped,
           coalesce((SELECT jsonb_object_agg(o.outcome, o.n)
                       FROM (SELECT coalesce(e.outcome::text, 'none') AS outcome, count(*) AS n
                               FROM batchctl.batch_entries e
                              WHERE e.batch_id = b.id AND e.tenant_id = b.tenant_id GROUP BY 1) o), '{}'),
           cs.calls,
           coalesce((SELECT jsonb_object_agg(a.attempt, a.n ORDER BY a.attempt)
                       FROM (SELECT c.attempt, count(*) AS n FROM batchctl.call_logs c
                              WHERE c.batch_id = b.id AND c.tenant_id = b.tenant_id
                              GROUP BY c.attempt) a), '{}'),
           cs.median, cs.p90, cs.total_duration, ks.analysis_keys, ks.context_keys,
           (SELECT count(*)::integer FROM batchctl.batch_entries e
             WHERE e.batch_id = b.id AND e.tenant_id = b.tenant_id
               AND (jsonb_typeof(e.context) <> 'object'
                    OR jsonb_path_exists(e.context, 'strict $.**{100}')
                    -- (searched only as deep: all the way down a 10,000-level value would cost
                    -- the stack)
                    OR jsonb_path_exists(e.context,
                           'strict $.**{0 to 99} ? (@.type() == "number" && @.abs() >= 1e4300)')))
      FROM batchctl.batches b
      JOIN batchctl.tenants t ON t.id = b.tenant_id
     CROSS JOIN LATERAL (
         SELECT count(*)::integer AS calls,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY c.duration_seconds) AS median,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY c.duration_seconds) AS p90,
                sum(c.duration_seconds) AS total_duration
           FROM batchctl.call_logs c WHERE c.batch_id = b.id AND c.tenant_id = b.tenant_id
     ) cs
     CROSS JOIN LATERAL (
         -- Both kinds of keys in one pass over the entries.
         SELECT coalesce(array_agg(k.key ORDER BY k.rank) FILTER (WHERE k.field = 'analysis'),
                         '{}') AS analysis_keys,
                coalesce(array_agg(k.key ORDER BY k.rank) FILTER (WHERE k.field = 'context'),
                         '{}') AS context_keys
           FROM (SELECT d.field, f.key,
                        row_number() OVER (PARTITION BY d.field
                                               ORDER BY count(*) DESC, f.key) AS rank
                   FROM batchctl.report_entries re
                  CROSS JOIN LATERAL (VALUES ('analysis', re.analysis),
                                             ('context', re.context)) d (field, doc)
                  CROSS JOIN LATERAL jsonb_object_keys(
                            CASE jsonb_typeof(d.doc) WHEN 'object' THEN d.doc END) f (key)
                  WHERE re.batch_id = b.id AND re.tenant_id = b.tenant_id
                  GROUP BY d.field, f.key) k
          WHERE k.rank <= 1000
     ) ks
     WHERE b.id = p_batch_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % not found', p_batch_id USING ERRCODE = 'BC002';
    END IF;
END
$$;

-- The set forms answer each item on its own: a malformed report or a wrong room is refused
-- alone (its row says why, in a new column `error`) where it used to fail the whole call, so
-- that one bad item in a completer's flush never cost the others theirs. A function's result
-- type cannot be replaced: sql/052 and sql/054 create them anew (and sql/090 grants them).
DROP FUNCTION IF EXISTS batchctl.report_call_statuses(uuid[], text[], jsonb[]);
DROP FUNCTION IF EXISTS batchctl.mark_dispatched_many(uuid[], text[], text[]);

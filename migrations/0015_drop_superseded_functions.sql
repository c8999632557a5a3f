-- Functions no sql/ file defines any more, dropped once here rather than on every upgrade:
-- the entry insert trigger's function (replaced by entries_counted), and the sweep's steps as
-- they were before sweep() found all their rows first and locked their batches at once (they
-- now take the rows as arguments).
DROP FUNCTION IF EXISTS batchctl.entries_after_insert();
DROP FUNCTION IF EXISTS batchctl.sweep_expired_leases(timestamptz);
DROP FUNCTION IF EXISTS batchctl.sweep_unanswered(timestamptz);
DROP FUNCTION IF EXISTS batchctl.sweep_stuck_calls(batchctl.call_status, text, text, timestamptz);
DROP FUNCTION IF EXISTS batchctl.sweep_expired_entries(timestamptz);
DROP FUNCTION IF EXISTS batchctl.defer_to_call_windows(timestamptz);
-- timezone_verdicts gained a column (problem): a function's result type cannot be replaced.
DROP FUNCTION IF EXISTS batchctl.timezone_verdicts(text[]);

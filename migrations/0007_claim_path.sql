-- The claim path (issue 6, bench/RESULTS.md).
--
-- Numbers on a call, or possibly on one (a queued entry whose last claim was never
-- acknowledged): the claim's "never two live calls to one number" probe reads this index, which
-- holds only the tenant's live calls, whatever the size of the queue or the table statistics.
CREATE INDEX entries_busy_numbers ON batchctl.batch_entries (tenant_id, to_phone)
    WHERE status IN ('running', 'dispatched') OR (status = 'queued' AND dispatch_unconfirmed);

-- Superseded: the claim's probe reads entries_busy_numbers, add_dnc probes (batch, number) per
-- unfinished batch. Every entry transition wrote to it.
DROP INDEX batchctl.entries_live_by_phone;

-- Nothing looks a call up by its room name (call_log_id(room) derives the id), and every status
-- change of a call writes to each of its indexes.
DROP INDEX IF EXISTS batchctl.call_logs_by_room;

-- claim_entries gains a column (dispatch_unconfirmed: whether LiveKit may already have the
-- room); a function's result type cannot be replaced, so sql/050 creates it anew.
DROP FUNCTION IF EXISTS batchctl.claim_entries(text, integer, integer);

-- The operator dashboard (docs/dashboard.md).
--
-- events.actor: who made a change, for the audit. The session's role (the login, or the role it
-- SET ROLE to: a tenant login the dashboard acts as), which the database vouches for, followed
-- by what the application says on its behalf in the batchctl.actor setting (per transaction;
-- the dashboard puts its signed-in token's name there). Rows from before this migration have
-- none: nobody recorded it then.
ALTER TABLE batchctl.events ADD COLUMN actor text;
ALTER TABLE batchctl.events ALTER COLUMN actor SET DEFAULT (
    coalesce(nullif(current_setting('role'), 'none'), session_user::text)
    || coalesce(' via ' || nullif(current_setting('batchctl.actor', true), ''), ''));

-- The batch page's entries table pages by entry_index (keyset), on batches of any size, and
-- filtered by a final status, where the second reads exactly its page however rare the status.
-- (Only final statuses: with the live ones in it, the claim and the sweep would take it over
-- their partial indexes, which hold no history. A page of a live status reads those.)
CREATE INDEX entries_by_batch_index ON batchctl.batch_entries (batch_id, entry_index);
CREATE INDEX entries_finished_by_batch_index
    ON batchctl.batch_entries (batch_id, status, entry_index)
    WHERE status IN ('completed', 'failed', 'declined', 'cancelled');
-- Its chart of calls started and finished per minute counts one batch's calls in two ranges
-- per minute (bench/RESULTS.md section 11).
CREATE INDEX call_logs_by_batch_started ON batchctl.call_logs (batch_id, started_at);
CREATE INDEX call_logs_by_batch_ended ON batchctl.call_logs (batch_id, ended_at)
    WHERE ended_at IS NOT NULL;
-- Its most frequent errors: the entries with one (not those retried after busy or no answer,
-- nor cancelled ones, which say why they were cancelled), not the whole batch.
CREATE INDEX entries_errors ON batchctl.batch_entries (batch_id, last_error)
    WHERE last_error IS NOT NULL AND status <> 'cancelled' AND last_error NOT LIKE 'retry after %';

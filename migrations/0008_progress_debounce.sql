-- batchctl_progress is rate-limited per batch (sql/030_batch_triggers.sql): every counter change
-- used to notify, and PostgreSQL commits notifying transactions one at a time, which cost the
-- batched claim/acknowledge/report path 7-20% of its throughput (bench/RESULTS.md). This is
-- when the batch last notified. It is not indexed, so the counter updates stay HOT.
ALTER TABLE batchctl.batches ADD COLUMN progress_notified_at timestamptz;

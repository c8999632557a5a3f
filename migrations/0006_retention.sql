-- Retention (sql/065_retention.sql): prune() looks for batches that finished before a cutoff,
-- oldest first, on every call (pg_cron: every minute). This index makes that an index range
-- scan over the finished batches, and an idle call one probe. finished_at is set once per batch,
-- so the index costs nothing on the counter updates, which stay HOT.
CREATE INDEX batches_finished ON batchctl.batches (finished_at) WHERE finished_at IS NOT NULL;

-- Views run with the caller's rights (security_invoker), so row-level security applies to them.
CREATE OR REPLACE VIEW batchctl.batch_overview WITH (security_invoker = true) AS
SELECT b.id AS batch_id, b.tenant_id, t.name AS tenant_name, b.status, b.total,
       b.queued_count + b.running_count + b.dispatched_count AS pending,
       b.queued_count AS queued, b.running_count AS running, b.dispatched_count AS dispatched,
       b.completed_count AS completed, b.failed_count AS failed, b.declined_count AS declined,
       b.cancelled_count AS cancelled, b.duplicates, b.dnc_skipped,
       b.created_at, b.started_at, b.finished_at, b.cancel_reason, r.status AS report_status
  FROM batchctl.batches b
  JOIN batchctl.tenants t ON t.id = b.tenant_id
  LEFT JOIN batchctl.reports r ON r.batch_id = b.id AND r.tenant_id = b.tenant_id;

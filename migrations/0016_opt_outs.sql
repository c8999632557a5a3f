-- Opt-outs: a person who asks on a call not to be called again ("opt_out": true in the detail
-- of report_call_status, sql/054) is put on the tenant's do-not-call list in the transaction
-- that reports it. The list now says where each number came from (add_dnc: an operator's list;
-- opt_out: the person, on the call call_log_id; no foreign key: call logs are pruned, the
-- record stays) and when (created_at); the entry of that call records when it opted out.
-- Both columns are metadata-only; the policies of migrations/0002 and sql/015 cover them.
ALTER TABLE batchctl.dnc_numbers
    ADD COLUMN source text NOT NULL DEFAULT 'add_dnc',
    ADD COLUMN call_log_id uuid,
    ADD CONSTRAINT dnc_numbers_source_check CHECK (source IN ('add_dnc', 'opt_out')),
    ADD CONSTRAINT dnc_numbers_opt_out_call_check CHECK ((source = 'opt_out') = (call_log_id IS NOT NULL));

ALTER TABLE batchctl.batch_entries ADD COLUMN opted_out_at timestamptz;

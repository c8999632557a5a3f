-- Tenant compliance policies, contact history by number, consent, intake refusals
-- (docs/compliance.md).
--
-- tenants.policy: the tenant's compliance policy as set_policy stored it (validated, sql/029);
--   '{}' is every default. What the claim reads, once per tenant.
-- call_logs.to_phone: the number each call dialled, so that frequency caps and cool-offs count a
--   number's calls across every batch of its tenant with one index probe. Unlike the partial
--   indexes of live rows, call_logs_by_number covers the history: a cap is about the past.
-- batch_entries.consent_at / consent_source: the consent evidence a lead came with (intake,
--   sql/042), shown in the report; jurisdictions: the keys of the rules that apply to it.
-- intake_refusals: lead rows left out of a batch at intake (the CLI's --skip-invalid), with the
--   problem, written in the transaction that creates the batch, for the report's Compliance
--   sheet. The SQL API's intake is all or nothing: it refuses the whole call and writes nothing.

ALTER TABLE batchctl.tenants ADD COLUMN policy jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(policy) = 'object');

ALTER TABLE batchctl.call_logs ADD COLUMN to_phone text;
UPDATE batchctl.call_logs c SET to_phone = e.to_phone
  FROM batchctl.batch_entries e
 WHERE e.id = c.entry_id AND e.tenant_id = c.tenant_id;
ALTER TABLE batchctl.call_logs ALTER COLUMN to_phone SET NOT NULL;
CREATE INDEX call_logs_by_number ON batchctl.call_logs (tenant_id, to_phone, started_at);

ALTER TABLE batchctl.batch_entries
    ADD COLUMN consent_at timestamptz,
    ADD COLUMN consent_source text,
    -- The keys of the jurisdiction rules that apply to the entry (sql/027 entry_jurisdictions:
    -- its subdivisions, their countries, its country), worked out once at intake rather than
    -- for every entry every claim reads.
    ADD COLUMN jurisdictions text[] NOT NULL DEFAULT '{}';
UPDATE batchctl.batch_entries
   SET jurisdictions = array_append(
           subdivisions || ARRAY(SELECT left(s, 2) FROM unnest(subdivisions) s), country)
 WHERE country IS NOT NULL OR subdivisions <> '{}';

ALTER TYPE batchctl.new_entry ADD ATTRIBUTE consent_at timestamptz, ADD ATTRIBUTE consent_source text;

CREATE TABLE batchctl.intake_refusals (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id  uuid NOT NULL,
    batch_id   uuid NOT NULL,
    line       integer,   -- the lead file's line, when there is one
    to_phone   text,      -- as given (it may not be a number)
    problem    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, batch_id) REFERENCES batchctl.batches (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX intake_refusals_by_batch ON batchctl.intake_refusals (batch_id);

ALTER TABLE batchctl.intake_refusals ENABLE ROW LEVEL SECURITY;
-- (tenant_isolation: sql/015, with the other tables.)
CREATE POLICY worker_all ON batchctl.intake_refusals TO batchctl_worker USING (true);
GRANT SELECT ON batchctl.intake_refusals TO batchctl_tenant, batchctl_worker;

-- Calling hours now take the keys of the rules that apply (sql/027: the tenant's policy may
-- switch the jurisdiction rules off) and the tenant's holidays; the claim's hold-back is one
-- function shared with the sweep (dial_holds). SQL-standard bodies depend on what they call:
-- dropped callers first.
DROP FUNCTION IF EXISTS batchctl.may_dial(jsonb, text, text, text[], timestamptz);
DROP FUNCTION IF EXISTS batchctl.rules_allow(text, text[], text, timestamptz);
DROP FUNCTION IF EXISTS batchctl.next_allowed(jsonb, text, text, text[], timestamptz);
DROP FUNCTION IF EXISTS batchctl.rule_held(uuid, timestamptz, integer);
DROP FUNCTION IF EXISTS batchctl.defer_to_call_windows(uuid[], timestamptz);
DROP FUNCTION IF EXISTS batchctl.choose_claims(uuid, integer, timestamptz);  -- returns held too
-- entry_problem gains the consent evidence: a new argument list is a new function.
DROP FUNCTION IF EXISTS batchctl.entry_problem(text, text, text, jsonb, text, boolean, text, text);

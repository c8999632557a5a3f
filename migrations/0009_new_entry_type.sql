-- A lead as create_batch_from_rows takes it (sql/042_intake.sql): create_batch's JSON
-- entries become these, and the CLI's staged CSV rows are handed over as these directly,
-- without a JSON document of the whole file built and taken apart again.
CREATE TYPE batchctl.new_entry AS (
    to_phone  text,
    lead_name text,
    lead_id   text,
    context   jsonb,
    timezone  text
);

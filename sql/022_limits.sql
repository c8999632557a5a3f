-- Intake bounds: the most any one value may hold, checked where it comes in (BC001 naming the
-- row and field), so that nothing a caller stores can stall or crash a reader of it: a lead's
-- context nested 10,000 levels deep once made every daemon's JSON decoder raise on every claim.
-- The limits are far beyond what a real campaign sends; docs/sql-api.md lists them.
--
-- SQL-standard bodies without SET (bound when created, inlined into the checks that use them),
-- like the rules in sql/010.

-- Nesting of JSON values (context, metadata, call detail): a value inside 32 objects or arrays
-- is the deepest allowed ({"a": 1} is 1 deep).
CREATE OR REPLACE FUNCTION batchctl.max_json_depth()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 32;

-- A lead's context and a batch's metadata, in bytes of JSON text.
CREATE OR REPLACE FUNCTION batchctl.max_context_bytes()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 65536;

-- One call report's detail (analysis, summary, even a transcript).
CREATE OR REPLACE FUNCTION batchctl.max_detail_bytes()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 1048576;

-- The longest call a report may state (detail.duration_seconds): a week, the longest
-- ongoing_timeout_s a batch may set.
CREATE OR REPLACE FUNCTION batchctl.max_call_seconds()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 604800;

-- Short text: lead names and ids, reasons, errors, worker and agent names.
CREATE OR REPLACE FUNCTION batchctl.max_text_length()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 1000;

-- What is wrong with a JSON value for a field that takes at most p_max_bytes, or null.
CREATE OR REPLACE FUNCTION batchctl.json_problem(p_value jsonb, p_max_bytes integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    -- (Its size as JSON text: the size as stored depends on whether it was compressed.)
    WHEN pg_catalog.octet_length(p_value::text) > p_max_bytes
        THEN pg_catalog.format('is %s bytes of JSON, more than the %s allowed',
                               pg_catalog.octet_length(p_value::text), p_max_bytes)
    -- An item at level max + 1 exists only in a value nested deeper than allowed; the search
    -- stops at that level, so a hostile value costs no more than a legal one.
    WHEN pg_catalog.jsonb_path_exists(
             p_value, ('strict $.**{' || batchctl.max_json_depth() + 1 || '}')::pg_catalog.jsonpath)
        THEN pg_catalog.format('is nested more than %s levels deep', batchctl.max_json_depth())
END;

-- What is wrong with a short text field, or null.
CREATE OR REPLACE FUNCTION batchctl.text_problem(p_value text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN pg_catalog.length(p_value) > batchctl.max_text_length()
        THEN pg_catalog.format('is %s characters, more than the %s allowed',
                               pg_catalog.length(p_value), batchctl.max_text_length())
END;

-- A value as an error message shows it: a message names what is wrong, it does not echo
-- megabytes back.
CREATE OR REPLACE FUNCTION batchctl.excerpt(p_value text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.length(p_value) > 60 THEN pg_catalog.left(p_value, 57) || '...' ELSE p_value END;

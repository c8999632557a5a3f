-- The transition rules: every allowed status change of batches, entries and calls, and the
-- mapping from a call's outcome to its entry's status. The triggers in sql/03x enforce these on
-- every write, whoever makes it; docs/state-machine.md draws them.
--
-- These are SQL-standard bodies (RETURN ...) with every name schema-qualified: they are bound
-- when created and look nothing up by search_path when called, so unlike every other function
-- they carry no SET search_path, and without a SET clause PostgreSQL inlines them into the
-- statements and triggers that call them (a SET would make each call a function call with a
-- setting saved and restored: several per transition, on the hottest path).

CREATE OR REPLACE FUNCTION batchctl.batch_transition_allowed(
    p_from batchctl.batch_status, p_to batchctl.batch_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_from
    WHEN 'pending' THEN p_to IN ('running', 'cancelled', 'failed')
    -- paused -> completed: every entry became terminal while paused (e.g. cancelled singly).
    WHEN 'running' THEN p_to IN ('paused', 'completed', 'cancelled', 'failed')
    WHEN 'paused'  THEN p_to IN ('running', 'completed', 'cancelled', 'failed')
    ELSE false  -- completed, cancelled, failed are terminal
END;

CREATE OR REPLACE FUNCTION batchctl.entry_transition_allowed(
    p_from batchctl.entry_status, p_to batchctl.entry_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_from
    WHEN 'queued'     THEN p_to IN ('running', 'cancelled')
    -- running -> queued: dispatch failed and is retryable, or the claim's lease expired.
    WHEN 'running'    THEN p_to IN ('dispatched', 'queued', 'failed', 'cancelled')
    -- dispatched -> queued: never picked up (sweep) or a retry policy matched the outcome.
    WHEN 'dispatched' THEN p_to IN ('completed', 'failed', 'declined', 'cancelled', 'queued')
    ELSE false  -- completed, failed, declined, cancelled are terminal
END;

CREATE OR REPLACE FUNCTION batchctl.call_status_rank(p_status batchctl.call_status)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_status WHEN 'in_queue' THEN 0 WHEN 'ringing' THEN 1 WHEN 'ongoing' THEN 2 ELSE 3 END;

-- Calls only move forward (in_queue -> ringing -> ongoing -> a terminal status; steps may be
-- skipped) and never leave a terminal status.
CREATE OR REPLACE FUNCTION batchctl.call_transition_allowed(
    p_from batchctl.call_status, p_to batchctl.call_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN batchctl.call_status_rank(p_from) < 3
   AND batchctl.call_status_rank(p_to) > batchctl.call_status_rank(p_from);

CREATE OR REPLACE FUNCTION batchctl.is_terminal(p_status batchctl.batch_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_status IN ('completed', 'cancelled', 'failed');

CREATE OR REPLACE FUNCTION batchctl.is_terminal(p_status batchctl.entry_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_status IN ('completed', 'failed', 'declined', 'cancelled');

CREATE OR REPLACE FUNCTION batchctl.is_terminal(p_status batchctl.call_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN batchctl.call_status_rank(p_status) = 3;

-- The entry status a call's status stands for ('dispatched' while the call is live).
-- (Each result a typed constant: a cast of the CASE would call the enum's input function, which
-- is only STABLE, and an IMMUTABLE function calling it is not inlined.)
CREATE OR REPLACE FUNCTION batchctl.entry_status_for_call(p_status batchctl.call_status)
RETURNS batchctl.entry_status LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_status IN ('in_queue', 'ringing', 'ongoing') THEN 'dispatched'::batchctl.entry_status
    WHEN p_status IN ('ended', 'completed') THEN 'completed'::batchctl.entry_status
    WHEN p_status IN ('failed', 'error', 'not_reachable') THEN 'failed'::batchctl.entry_status
    WHEN p_status IN ('declined', 'rejected', 'no_answer', 'busy', 'voicemail') THEN 'declined'::batchctl.entry_status
    ELSE 'cancelled'::batchctl.entry_status
END;

-- Deterministic per (entry, attempt): a daemon that crashed after LiveKit accepted a dispatch
-- finds the same room on re-claim and adopts it instead of dialling again.
CREATE OR REPLACE FUNCTION batchctl.room_name(p_entry_id uuid, p_attempt integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- (Explicit casts: text || uuid is the STABLE any-type concatenation, which would stop inlining.)
RETURN 'batchctl-' || p_entry_id::text || '-' || p_attempt::text;

-- The call log of a room: a UUID v3 (RFC 4122, name-based) of the room name, so the daemon can
-- hand it to the voice agent in the dispatch metadata before the call log exists, and a webhook
-- maps a room to its call without a look-up. batchctl.identifiers computes the same in Python.
-- Inlined like the rules above (one per acknowledgement); STABLE because convert_to is. The
-- digest is written out three times because an inlined body cannot hold a sub-SELECT.
CREATE OR REPLACE FUNCTION batchctl.call_log_id(p_room_name text)
RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
RETURN encode(
    set_byte(
        set_byte(decode(md5(decode('4d356a18331856babbebeb86390ccc97', 'hex') || convert_to(p_room_name, 'UTF8')), 'hex'),
                 6, (get_byte(decode(md5(decode('4d356a18331856babbebeb86390ccc97', 'hex') || convert_to(p_room_name, 'UTF8')), 'hex'), 6) & 15) | 48),
        8, (get_byte(decode(md5(decode('4d356a18331856babbebeb86390ccc97', 'hex') || convert_to(p_room_name, 'UTF8')), 'hex'), 8) & 63) | 128),
    'hex')::uuid;

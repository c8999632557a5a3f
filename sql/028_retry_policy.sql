-- Retry policy: every "try again, after how long, how often" of batchctl in one place. What a
-- retry means for the statuses (which transition, which guard) is the transitions' and the
-- triggers'; here only the numbers and the rules that pick them. SQL-standard bodies without
-- SET, inlined into the statements that ask them, like the rules in sql/010.

-- The delay before a retry of p_outcome: its policy's delay_s, else retry_delay_s.
CREATE OR REPLACE FUNCTION batchctl.outcome_delay(p_options jsonb, p_outcome batchctl.call_status)
RETURNS interval LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => coalesce(
    (p_options -> 'retry_policy' -> p_outcome::text ->> 'delay_s')::integer,
    (p_options ->> 'retry_delay_s')::integer));

-- A call that ended with p_outcome, after p_answered answered attempts: the delay before the
-- entry is dialled again by its batch's options (retry_on / retry_policy, max_attempts,
-- retry_delay_s, a per-outcome policy overriding both), or null when it is not. A retry that
-- would fall after the batch's dialling period (end_at) is none.
CREATE OR REPLACE FUNCTION batchctl.outcome_retry_delay(
    p_options jsonb, p_outcome batchctl.call_status, p_answered integer)
RETURNS interval LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN (p_options -> 'retry_on' ? p_outcome::text OR p_options -> 'retry_policy' ? p_outcome::text)
         AND p_answered < coalesce((p_options -> 'retry_policy' -> p_outcome::text ->> 'max_attempts')::integer,
                                   (p_options ->> 'max_attempts')::integer)
         AND batchctl.dialling_open(p_options, now() + batchctl.outcome_delay(p_options, p_outcome))
        THEN batchctl.outcome_delay(p_options, p_outcome)
END;

-- A dispatched call never picked up (pickup_timeout_s): dispatched again while the entry has
-- had fewer than max_retries such re-dispatches.
CREATE OR REPLACE FUNCTION batchctl.pickup_retry_allowed(p_options jsonb, p_retry_count integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_retry_count < (p_options ->> 'max_retries')::integer;

-- A dispatch LiveKit refused (or whose outcome is unknown) is tried again after 5, 10, 20,
-- 40 s ...; the fifth failure ends the entry (an unknown one only once its slot is no longer
-- held: sql/052).
CREATE OR REPLACE FUNCTION batchctl.dispatch_retry_delay(p_failures_before integer)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => 5 * 2 ^ p_failures_before);

CREATE OR REPLACE FUNCTION batchctl.dispatch_failures_allowed()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 5;

-- A hang-up (deleting a room) that failed is tried again after 2, 4, 8 ... s, at most 5
-- minutes apart, for as long as it takes. A claimed one is invisible to other claimers for
-- 30 s (a visibility timeout, as in pgmq): a daemon that died mid-way leaves it to the next.
CREATE OR REPLACE FUNCTION batchctl.hangup_retry_delay(p_attempts integer)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => least(2 ^ p_attempts, 300));

CREATE OR REPLACE FUNCTION batchctl.hangup_visibility_timeout()
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN interval '30 seconds';

-- A report e-mail that failed is sent again after 1, 2, 4, 8 minutes; the fifth failure is
-- final. A claimed report is leased for 10 minutes (sweep() releases it after).
CREATE OR REPLACE FUNCTION batchctl.report_retry_delay(p_attempts integer)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.make_interval(mins => (2 ^ (p_attempts - 1))::integer);

CREATE OR REPLACE FUNCTION batchctl.report_attempts_allowed()
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 5;

CREATE OR REPLACE FUNCTION batchctl.report_lease()
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN interval '10 minutes';

-- A call the carrier refused for capacity (docs/trunks.md): a SIP 503 reported by whoever
-- dialled, or "carrier_refused": true (the daemon's mark for LiveKit's 429/503 on the dial, and a
-- voice agent's for a 486 its carrier sends for capacity). A 486 alone is a busy callee.
CREATE OR REPLACE FUNCTION batchctl.carrier_refused(p_detail jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(p_detail -> 'carrier_refused' = 'true' OR p_detail -> 'sip_status_code' IN ('503', '"503"'),
                false);

-- How long a trunk waits after its p_refusals-th capacity refusal in a row: 1, 2, 4 … s, at
-- most 5 minutes, a quarter of it at random more, so that daemons do not come back together.
CREATE OR REPLACE FUNCTION batchctl.carrier_backoff(p_refusals integer)
RETURNS interval LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN pg_catalog.make_interval(secs => least(2 ^ (p_refusals - 1), 300)
                                        * (1 + pg_catalog.random() / 4));

-- An entry whose calls the carrier refused this many times ends with its last call's outcome: a
-- trunk that refuses everything must not keep a batch from finishing.
CREATE OR REPLACE FUNCTION batchctl.carrier_retry_allowed(p_refusals integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_refusals < 20;

-- Outbound webhooks (docs/webhooks.md). What an attempt's answer makes of its delivery: a 2xx
-- delivered it; a 410 asks us to stop (the endpoint is switched off); anything else (another
-- code, or no answer at all: p_status_code null) is tried again.
CREATE OR REPLACE FUNCTION batchctl.webhook_reply_outcome(p_status_code integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN p_status_code BETWEEN 200 AND 299 THEN 'delivered'
            WHEN p_status_code = 410 THEN 'gone'
            ELSE 'retry' END;

-- The wait after failed attempt p_attempt (1, 2, …) before the next, nominal: 31 h 42 min 35 s
-- in all, over 24 h even with every wait 20 % short (the last 8 h is what keeps it so); null
-- after the twelfth attempt: the delivery fails.
CREATE OR REPLACE FUNCTION batchctl.webhook_retry_delay(p_attempt integer)
RETURNS interval LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ('{5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h, 8 h}'::interval[])[p_attempt];

-- The same with ± 20 % at random, so that an endpoint's failures do not all come back together.
CREATE OR REPLACE FUNCTION batchctl.webhook_retry_wait(p_attempt integer)
RETURNS interval LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN batchctl.webhook_retry_delay(p_attempt) * (0.8 + 0.4 * pg_catalog.random());

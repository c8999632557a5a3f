-- Calling hours by the recipient's jurisdiction (docs/compliance.md).
--
-- jurisdiction_rules: global reference data, one row per jurisdiction ('US', 'US-FL', 'FR': an
--   ISO 3166-1 country, or an ISO 3166-2 subdivision), written by the owner only. An entry may
--   be dialled only when its batch's call_window and every rule that applies to it allow it
--   (sql/027). days: ISO weekdays (1 = Monday .. 7 = Sunday); hours: the local times allowed on
--   those days, one or more ranges ([10:00,13:00) + [14:00,20:00)). The rolling cap (max_calls
--   per cap_window) and the cool-off after a refusal are stored for the frequency rules to come;
--   this version does not enforce them.
-- phone_prefixes: which country, and in the North American plan which state or province, a
--   number belongs to, by the longest prefix of its digits (generated: 0018).
-- batch_entries gain region (the lead's own ISO 3166-2 code, as given), country and
--   subdivisions (derived at intake: sql/042).

CREATE TYPE batchctl.time_range AS RANGE (SUBTYPE = time, MULTIRANGE_TYPE_NAME = batchctl.time_multirange);
-- Its constructors pin their search path like every batchctl function (tests/sql/test_shadowing.py).
ALTER FUNCTION batchctl.time_range(time, time) SET search_path = batchctl, pg_catalog, pg_temp;
ALTER FUNCTION batchctl.time_range(time, time, text) SET search_path = batchctl, pg_catalog, pg_temp;
ALTER FUNCTION batchctl.time_multirange() SET search_path = batchctl, pg_catalog, pg_temp;
ALTER FUNCTION batchctl.time_multirange(batchctl.time_range)
    SET search_path = batchctl, pg_catalog, pg_temp;
ALTER FUNCTION batchctl.time_multirange(VARIADIC batchctl.time_range[])
    SET search_path = batchctl, pg_catalog, pg_temp;

CREATE TABLE batchctl.jurisdiction_rules (
    jurisdiction    text PRIMARY KEY
                    CHECK (jurisdiction ~ '^[A-Z]{2}(-[A-Z0-9]{1,3})?$'),
    days            smallint[] NOT NULL
                    CHECK (cardinality(days) > 0 AND days <@ '{1,2,3,4,5,6,7}'
                           AND array_position(days, NULL) IS NULL),
    hours           batchctl.time_multirange NOT NULL CHECK (NOT isempty(hours)),
    max_calls       integer CHECK (max_calls > 0),
    cap_window      interval CHECK (cap_window > interval '0'),
    refusal_cooloff interval CHECK (refusal_cooloff > interval '0'),
    source          text NOT NULL CHECK (length(btrim(source)) > 0),
    note            text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cap_has_a_window CHECK ((max_calls IS NULL) = (cap_window IS NULL))
);

INSERT INTO batchctl.jurisdiction_rules
    (jurisdiction, days, hours, max_calls, cap_window, refusal_cooloff, source, note)
VALUES
    ('US', '{1,2,3,4,5,6,7}', '{[08:00,21:00)}', NULL, NULL, NULL,
     '47 CFR 64.1200(c)(1) (TCPA): no telephone solicitation before 8 a.m. or after 9 p.m. local time at the called party''s location',
     'default shipped with batchctl; review before use'),
    ('US-FL', '{1,2,3,4,5,6,7}', '{[08:00,20:00)}', 3, interval '24 hours', NULL,
     'Fla. Stat. 501.616(6) (Florida Telephone Solicitation Act, as amended in 2021 by SB 1120): 8 a.m. to 8 p.m. local time; at most 3 calls per 24 hours on the same subject to one number',
     'default shipped with batchctl; review before use'),
    ('FR', '{1,2,3,4,5}', '{[10:00,13:00),[14:00,20:00)}', 4, interval '30 days', interval '60 days',
     'Décret n° 2022-1313 du 13 octobre 2022 (days and hours of telephone canvassing, Code de la consommation): Monday to Friday 10:00-13:00 and 14:00-20:00, no calls on Saturdays, Sundays and public holidays; at most 4 calls per 30 days to one consumer; none for 60 days after a refusal',
     'default shipped with batchctl; review before use; public holidays not yet enforced');

CREATE TABLE batchctl.phone_prefixes (
    prefix      text PRIMARY KEY CHECK (prefix ~ '^[1-9][0-9]{0,5}$'),
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    subdivision text CHECK (subdivision ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$' AND left(subdivision, 2) = country)
);

ALTER TABLE batchctl.batch_entries
    ADD COLUMN region text,
    ADD COLUMN country text,
    ADD COLUMN subdivisions text[] NOT NULL DEFAULT '{}';

ALTER TYPE batchctl.new_entry ADD ATTRIBUTE region text;

-- entry_problem gains the region: a new argument list is a new function.
DROP FUNCTION IF EXISTS batchctl.entry_problem(text, text, text, jsonb, text, boolean, text);

-- Reference data: the workers read it (the claim and the sweep run as the owner anyway); only
-- the owner writes it. No tenant reads it.
GRANT SELECT ON batchctl.jurisdiction_rules, batchctl.phone_prefixes TO batchctl_worker;

-- choose_claims takes the claim's clock (p_now): sql/050 creates it anew.
DROP FUNCTION IF EXISTS batchctl.choose_claims(uuid, integer);

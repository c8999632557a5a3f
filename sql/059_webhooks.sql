-- Outbound webhooks (docs/webhooks.md): the tenant API of endpoints, and the daemon's claim and
-- record of the deliveries the outbox (sql/056) queued.

-- What is wrong with an endpoint's URL, or null: http(s), a host, at most 2048 characters, no
-- spaces or credentials. (Where it may point is the sender's check, after DNS resolution, on
-- every delivery: batchctl/outbound/destinations.py.)
CREATE OR REPLACE FUNCTION batchctl.webhook_url_problem(p_url text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_url IS NULL THEN 'p_url: expected an http(s) URL, got null'
    WHEN pg_catalog.length(p_url) OPERATOR(pg_catalog.>) 2048
        THEN pg_catalog.format('p_url: at most 2048 characters, got %s', pg_catalog.length(p_url))
    WHEN NOT p_url OPERATOR(pg_catalog.~) '^https?://[^/?#@\s]+([/?#][^\s]*)?$'
        THEN pg_catalog.format('p_url %s: expected http(s)://host[:port][/path], without spaces or user:password@',
                               pg_catalog.to_jsonb(batchctl.excerpt(p_url)))
END;

-- ---------------------------------------------------------------------------------------------
-- The tenant API. SECURITY DEFINER: callers need EXECUTE only; each takes p_tenant_id first and
-- answers "not found" (BC002) for another tenant's endpoint.

-- A new endpoint of the tenant: its URL (webhook_url_problem), the event types it wants (null:
-- all; BC001 naming an unknown one) and its Standard Webhooks secret (whsec_ and the base64 of
-- 24 to 64 bytes; generated, 32 random bytes, when not given). Returns {endpoint_id, url,
-- events, secret}: the only answer that shows the secret.
CREATE OR REPLACE FUNCTION batchctl.add_webhook(
    p_tenant_id uuid, p_url text, p_events text[] DEFAULT NULL, p_secret text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text;
    v_key bytea;
    v_endpoint webhook_endpoints;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF webhook_url_problem(p_url) IS NOT NULL THEN
        RAISE EXCEPTION '%', webhook_url_problem(p_url) USING ERRCODE = 'BC001';
    END IF;
    IF p_events IS NOT NULL THEN
        SELECT string_agg(to_jsonb(e)::text, ', ') INTO v_unknown
          FROM unnest(p_events) e WHERE e IS NULL OR NOT e = ANY (webhook_event_types());
        IF v_unknown IS NOT NULL OR cardinality(p_events) = 0 THEN
            RAISE EXCEPTION 'p_events: % not an event type; expected some of %',
                coalesce(v_unknown, 'none given is'), array_to_string(webhook_event_types(), ', ')
                USING ERRCODE = 'BC001';
        END IF;
    END IF;
    IF p_secret IS NULL THEN
        -- 32 bytes from two v4 UUIDs' 244 random bits (gen_random_uuid uses a strong source).
        v_key := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
        p_secret := 'whsec_' || encode(v_key, 'base64');
    ELSIF NOT p_secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'
          OR length(decode(substr(p_secret, 7), 'base64')) NOT BETWEEN 24 AND 64 THEN
        RAISE EXCEPTION 'p_secret: expected whsec_ and the base64 of 24 to 64 random bytes'
            USING ERRCODE = 'BC001';
    END IF;
    INSERT INTO webhook_endpoints (tenant_id, url, events, secret)
    VALUES (p_tenant_id, p_url, (SELECT array_agg(DISTINCT e ORDER BY e) FROM unnest(p_events) e), p_secret)
    RETURNING * INTO v_endpoint;
    RETURN jsonb_build_object('endpoint_id', v_endpoint.id, 'url', v_endpoint.url,
                              'events', v_endpoint.events, 'secret', v_endpoint.secret);
END
$$;

-- Removes the tenant's endpoint with its deliveries (true); BC002 when it has none such.
CREATE OR REPLACE FUNCTION batchctl.remove_webhook(p_tenant_id uuid, p_endpoint_id uuid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_tenant(p_tenant_id);
    DELETE FROM webhook_endpoints WHERE tenant_id = p_tenant_id AND id = p_endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % not found', p_endpoint_id USING ERRCODE = 'BC002';
    END IF;
    -- (No foreign key: migrations/0023 says why.) A transition that queued a delivery for it
    -- in a transaction still open commits one with no endpoint, which no claim takes.
    DELETE FROM webhook_deliveries WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id;
    RETURN true;
END
$$;

-- The tenant's endpoints, oldest first, without their secrets: each with whether it is
-- enabled (else since when and why not), and its deliveries pending, delivered and failed.
CREATE OR REPLACE FUNCTION batchctl.list_webhooks(p_tenant_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_tenant(p_tenant_id);
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'endpoint_id', w.id, 'url', w.url, 'events', w.events,
                   'enabled', w.disabled_at IS NULL, 'disabled_at', w.disabled_at,
                   'disabled_reason', w.disabled_reason, 'created_at', w.created_at,
                   'pending', n.pending, 'delivered', n.delivered, 'failed', n.failed)
                   ORDER BY w.created_at, w.id)
          FROM webhook_endpoints w
         CROSS JOIN LATERAL (
             SELECT count(*) FILTER (WHERE d.status = 'pending') AS pending,
                    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed
               FROM webhook_deliveries d WHERE d.tenant_id = w.tenant_id AND d.endpoint_id = w.id) n
         WHERE w.tenant_id = p_tenant_id), '[]');
END
$$;

-- The endpoint's latest p_limit deliveries (1 to 1000), newest first, each with its attempts'
-- status codes and errors.
CREATE OR REPLACE FUNCTION batchctl.webhook_deliveries(
    p_tenant_id uuid, p_endpoint_id uuid, p_limit integer DEFAULT 50)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_limit: expected 1 to 1000, got %', coalesce(p_limit::text, 'null')
            USING ERRCODE = 'BC001';
    END IF;
    IF NOT EXISTS (SELECT FROM webhook_endpoints w WHERE w.tenant_id = p_tenant_id AND w.id = p_endpoint_id) THEN
        RAISE EXCEPTION 'endpoint % not found', p_endpoint_id USING ERRCODE = 'BC002';
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'delivery_id', d.id, 'message_id', d.message_id, 'type', d.event_type,
                   'batch_id', d.batch_id, 'status', d.status, 'attempts', d.attempts,
                   'next_attempt_at', CASE WHEN d.status = 'pending' THEN d.next_attempt_at END,
                   'created_at', d.created_at, 'delivered_at', d.delivered_at,
                   'last_status_code', d.last_status_code, 'last_error', d.last_error,
                   'tries', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                 'attempt', a.attempt, 'at', a.at, 'status_code', a.status_code,
                                 'error', a.error, 'elapsed_ms', a.elapsed_ms) ORDER BY a.attempt), '[]')
                               FROM webhook_attempts a
                              WHERE a.tenant_id = d.tenant_id AND a.delivery_id = d.id))
                   ORDER BY d.id DESC)
          FROM (SELECT * FROM webhook_deliveries d
                 WHERE d.tenant_id = p_tenant_id AND d.endpoint_id = p_endpoint_id
                 ORDER BY d.id DESC LIMIT p_limit) d), '[]');
END
$$;

-- Sends again every delivery of the endpoint queued since p_since (delivered or failed ones too,
-- with their webhook-id: receivers deduplicate by it), oldest first, and turns the endpoint
-- back on. Returns how many were queued again.
CREATE OR REPLACE FUNCTION batchctl.replay_webhooks(
    p_tenant_id uuid, p_endpoint_id uuid, p_since timestamptz)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF p_since IS NULL THEN
        RAISE EXCEPTION 'p_since: expected a time, got null' USING ERRCODE = 'BC001';
    END IF;
    UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL
     WHERE tenant_id = p_tenant_id AND id = p_endpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % not found', p_endpoint_id USING ERRCODE = 'BC002';
    END IF;
    UPDATE webhook_deliveries
       SET status = 'pending', attempts = 0, next_attempt_at = now(), claimed_by = NULL,
           lease_until = NULL, delivered_at = NULL
     WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id AND created_at >= p_since;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM pg_notify('batchctl_webhook', '');
    RETURN v_count;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The daemon's side (workers).

-- Up to p_limit deliveries due now, leased to p_worker for p_lease_seconds (another daemon may
-- take one whose lease ran out: at least once), SKIP LOCKED: daemons share the work. A delivery
-- is due only when no earlier one of its endpoint and key (its entry, or its batch) is pending:
-- an entry's events reach an endpoint in order. An endpoint in back-off or switched off holds
-- only its own deliveries.
CREATE OR REPLACE FUNCTION batchctl.claim_webhook_deliveries(
    p_worker text, p_limit integer DEFAULT 50, p_lease_seconds integer DEFAULT 30)
RETURNS TABLE (delivery_id bigint, tenant_id uuid, endpoint_id uuid, url text, secret text,
               message_id text, event_type text, payload jsonb, attempt integer,
               created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_claim(p_worker, p_limit, p_lease_seconds);
    RETURN QUERY
    WITH due AS (
        SELECT d.tenant_id, d.id
          FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND EXISTS (SELECT FROM webhook_endpoints w
                        WHERE w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
                          AND w.disabled_at IS NULL)
           AND NOT EXISTS (SELECT FROM webhook_deliveries p
                            WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
                              AND p.status = 'pending' AND p.id < d.id)
         ORDER BY d.next_attempt_at, d.id
         LIMIT p_limit
           FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1, claimed_by = p_worker,
           lease_until = now() + make_interval(secs => p_lease_seconds),
           -- Rendered once: every attempt sends the same bytes.
           payload = CASE WHEN d.payload ? 'data' THEN d.payload
                          ELSE d.payload || jsonb_build_object(
                                   'data', webhook_data(d.event_type, d.object_id, d.batch_id)) END
      FROM due, webhook_endpoints w
     WHERE d.tenant_id = due.tenant_id AND d.id = due.id
       AND w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
    RETURNING d.id, d.tenant_id, d.endpoint_id, w.url, w.secret, d.message_id, d.event_type,
              d.payload, d.attempts, d.created_at;
END
$$;

-- What attempt p_attempt of a delivery got: the receiver's status code and the start of its
-- reply, or the sender's error when there was no answer (p_status_code null). The database
-- decides what that makes of the delivery (sql/028: webhook_reply_outcome, webhook_retry_wait).
-- Every attempt is recorded; a delivery moves only on its current attempt's record (a late one
-- of an attempt whose lease ran out changes nothing). Delivered: done. Retry: due again after
-- the schedule's wait. Gone (410) or the schedule over: the delivery failed and its endpoint is
-- switched off, with the reason (replay_webhooks turns it back on). Returns the delivery's
-- status after.
CREATE OR REPLACE FUNCTION batchctl.record_webhook_attempt(
    p_tenant_id uuid, p_delivery_id bigint, p_attempt integer, p_status_code integer,
    p_error text, p_reply text, p_elapsed_ms numeric)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_delivery webhook_deliveries;
    v_outcome constant text := webhook_reply_outcome(p_status_code);
    -- What went wrong: the sender's own error (no answer), else the answer itself.
    v_error constant text := left(coalesce(p_error, CASE WHEN v_outcome <> 'delivered'
                                        THEN format('HTTP %s: %s', p_status_code, left(p_reply, 200)) END),
                                  max_text_length());
    v_wait constant interval := webhook_retry_wait(p_attempt);
BEGIN
    SELECT * INTO v_delivery FROM webhook_deliveries
     WHERE tenant_id = p_tenant_id AND id = p_delivery_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % not found', p_delivery_id USING ERRCODE = 'BC002';
    END IF;
    INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, status_code, error, elapsed_ms)
    VALUES (p_tenant_id, p_delivery_id, p_attempt, p_status_code, v_error, p_elapsed_ms)
    ON CONFLICT DO NOTHING;
    IF v_delivery.status <> 'pending' OR v_delivery.attempts <> p_attempt THEN
        RETURN v_delivery.status;
    END IF;
    IF v_outcome = 'delivered' THEN
        UPDATE webhook_deliveries
           SET status = 'delivered', delivered_at = now(), last_status_code = p_status_code,
               last_error = NULL, claimed_by = NULL, lease_until = NULL
         WHERE tenant_id = p_tenant_id AND id = p_delivery_id;
        RETURN 'delivered';
    ELSIF v_outcome = 'retry' AND v_wait IS NOT NULL THEN
        UPDATE webhook_deliveries
           SET next_attempt_at = now() + v_wait, last_status_code = p_status_code,
               last_error = v_error, claimed_by = NULL, lease_until = NULL
         WHERE tenant_id = p_tenant_id AND id = p_delivery_id;
        RETURN 'pending';
    END IF;
    UPDATE webhook_deliveries
       SET status = 'failed', last_status_code = p_status_code, last_error = v_error,
           claimed_by = NULL, lease_until = NULL
     WHERE tenant_id = p_tenant_id AND id = p_delivery_id;
    UPDATE webhook_endpoints
       SET disabled_at = now(),
           disabled_reason = CASE WHEN v_outcome = 'gone' THEN 'the receiver answered 410 Gone'
                                  ELSE format('delivery %s failed every attempt for %s: %s',
                                              p_delivery_id, date_trunc('second', now() - v_delivery.created_at),
                                              v_error) END
     WHERE tenant_id = p_tenant_id AND id = v_delivery.endpoint_id AND disabled_at IS NULL;
    RETURN 'failed';
END
$$;

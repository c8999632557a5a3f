-- Compliance (the tenant API, docs/compliance.md): a tenant's policy, and why an entry is not
-- being dialled. Each tenant function takes p_tenant_id first and answers "not found" (BC002)
-- for another tenant's objects. SECURITY DEFINER: callers need EXECUTE only.

-- Replaces the tenant's policy with p_policy, checked key by key (normalize_policy, sql/029:
-- BC001 naming the key; nothing changes); returns it with every default. A key left out is
-- its default: the whole policy is given each time. It applies to the tenant's next claim, in
-- every batch.
CREATE OR REPLACE FUNCTION batchctl.set_policy(p_tenant_id uuid, p_policy jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_policy jsonb;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    IF pg_column_size(p_policy) > 65536 THEN
        RAISE EXCEPTION 'policy: % bytes, more than the 65536 allowed', pg_column_size(p_policy)
            USING ERRCODE = 'BC001';
    END IF;
    v_policy := normalize_policy(p_policy);
    UPDATE tenants SET policy = v_policy WHERE id = p_tenant_id;
    RETURN v_policy;
END
$$;

-- The tenant's policy with every default.
CREATE OR REPLACE FUNCTION batchctl.get_policy(p_tenant_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM check_tenant(p_tenant_id);
    RETURN (SELECT effective_policy(t.policy) FROM tenants t WHERE t.id = p_tenant_id);
END
$$;

-- Why the entry is not being dialled now, and when it can be, by the claim's clock:
-- {"dialable_now": bool, "next_at": timestamptz|null, "reasons": [{"rule", "until"}, …]}.
-- Reasons, each with the moment it lifts (null: not by time alone):
--   status:<status>        the entry is not queued (on a call, or finished);
--   batch:<status>         its batch is not running;
--   start_at / end_at      the batch's dialling period has not begun / is over;
--   do_not_call            the number is on the tenant's do-not-call list;
--   call_window            outside the batch's call window;
--   quiet_hours:<rule>     a jurisdiction rule's hours (one reason per rule);
--   holiday                one of the tenant's holidays, in the recipient's local date;
--   frequency:<cap>        a frequency cap (the policy's per_24h …, or a rule's: frequency:US-FL);
--   cooloff:<outcome|rule> a cool-off after an outcome, or a rule's after a refusal;
--   scheduled              a retry or a hold waits until next_attempt_at, no other reason given;
--   number_busy            another entry of the number is on a call;
--   tenant_cap / wave_size no call slot free now (the tenant's max_concurrent_calls, the batch's
--                          wave_size).
-- next_at: the earliest moment every rule, the window, the holidays, the caps and the schedule
-- allow (calls made meanwhile may move it); null when the entry is finished, on the list, or
-- its batch is not running or past end_at.
CREATE OR REPLACE FUNCTION batchctl.explain_entry(p_tenant_id uuid, p_entry_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = batchctl, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock();
    v_entry batch_entries;
    v_batch batches;
    v_tenant tenants;
    v_policy jsonb;
    v_zone text;
    v_keys text[];
    v_holidays date[];
    v_window jsonb;
    v_reasons jsonb := '[]';
    v_blocked boolean := false;  -- no next_at: it waits for no moment
    v_from timestamptz := v_now;
    v_next timestamptz;
    v_in_flight integer;
BEGIN
    PERFORM check_tenant(p_tenant_id);
    SELECT * INTO v_entry FROM batch_entries WHERE id = p_entry_id AND tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entry % not found', p_entry_id USING ERRCODE = 'BC002';
    END IF;
    SELECT * INTO v_batch FROM batches WHERE id = v_entry.batch_id AND tenant_id = p_tenant_id;
    SELECT * INTO v_tenant FROM tenants WHERE id = p_tenant_id;
    v_policy := effective_policy(v_tenant.policy);
    v_zone := lead_zone(v_entry.timezone, v_tenant.timezone);
    v_keys := applied_jurisdictions(v_policy, v_entry.jurisdictions);
    v_holidays := policy_holidays(v_policy);
    v_window := v_batch.options -> 'call_window';

    IF v_entry.status <> 'queued' THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'status:' || v_entry.status, 'until', NULL);
        v_blocked := true;
    END IF;
    IF v_batch.status <> 'running' THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'batch:' || v_batch.status, 'until', NULL);
        v_blocked := true;
    END IF;
    IF dialling_over(v_batch.options, v_now) THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'end_at', 'until', NULL);
        v_blocked := true;
    ELSIF NOT dialling_open(v_batch.options, v_now) THEN
        v_from := (v_batch.options ->> 'start_at')::timestamptz;
        v_reasons := v_reasons || jsonb_build_object('rule', 'start_at', 'until', v_from);
    END IF;
    IF EXISTS (SELECT FROM dnc_numbers d WHERE d.tenant_id = p_tenant_id AND d.phone = v_entry.to_phone) THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'do_not_call', 'until', NULL);
        v_blocked := true;
    END IF;

    IF NOT in_call_window(v_window, v_zone, v_now) THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'call_window',
                                                     'until', next_window_open(v_window, v_zone, v_now));
    END IF;
    v_reasons := v_reasons || coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'rule', 'quiet_hours:' || r.jurisdiction,
                   'until', (next_allowed(NULL, v_zone, ARRAY[r.jurisdiction], '{}', v_now)).opens)
                   ORDER BY length(r.jurisdiction) DESC, r.jurisdiction)
          FROM jurisdiction_rules r
         WHERE r.jurisdiction = ANY (v_keys)
           AND NOT hours_allow(r.days, r.hours, v_now AT TIME ZONE v_zone)), '[]');
    IF on_holiday(v_holidays, v_zone, v_now) THEN
        v_reasons := v_reasons || jsonb_build_object(
            'rule', 'holiday', 'until', (next_allowed(NULL, v_zone, '{}', v_holidays, v_now)).opens);
    END IF;
    v_reasons := v_reasons || coalesce((
        SELECT jsonb_agg(jsonb_build_object('rule', w.rule, 'until', w.until) ORDER BY w.until DESC, w.rule)
          FROM contact_wait(p_tenant_id, v_entry.to_phone, v_policy, v_keys, v_now) w), '[]');
    v_from := greatest(v_from, (SELECT max(w.until) FROM contact_wait(p_tenant_id, v_entry.to_phone,
                                                                      v_policy, v_keys, v_now) w));

    IF NOT v_blocked THEN
        v_next := (next_allowed(v_window, v_zone, v_keys, v_holidays,
                                greatest(v_from, v_entry.next_attempt_at))).opens;
        IF v_entry.next_attempt_at > v_now
           AND NOT EXISTS (SELECT FROM jsonb_array_elements(v_reasons) r
                            WHERE (r ->> 'until')::timestamptz >= v_entry.next_attempt_at) THEN
            v_reasons := v_reasons || jsonb_build_object('rule', 'scheduled', 'until', v_entry.next_attempt_at);
        END IF;
    END IF;

    -- Not reasons of compliance, but of "why not now": the number's other calls and the slots.
    IF v_entry.status = 'queued' AND EXISTS (
        SELECT FROM batch_entries busy
         WHERE busy.tenant_id = p_tenant_id AND busy.to_phone = v_entry.to_phone AND busy.id <> v_entry.id
           AND (busy.status IN ('running', 'dispatched')
                OR (busy.status = 'queued' AND busy.dispatch_unconfirmed))) THEN
        v_reasons := v_reasons || jsonb_build_object('rule', 'number_busy', 'until', NULL);
    END IF;
    IF v_entry.status = 'queued' AND v_batch.status = 'running' THEN
        SELECT coalesce(sum(b.running_count + b.dispatched_count), 0) INTO v_in_flight
          FROM batches b WHERE b.tenant_id = p_tenant_id AND b.finished_at IS NULL;
        IF v_in_flight >= v_tenant.max_concurrent_calls THEN
            v_reasons := v_reasons || jsonb_build_object('rule', 'tenant_cap', 'until', NULL);
        ELSIF v_batch.running_count + v_batch.dispatched_count >= (v_batch.options ->> 'wave_size')::integer THEN
            v_reasons := v_reasons || jsonb_build_object('rule', 'wave_size', 'until', NULL);
        END IF;
    END IF;

    RETURN jsonb_build_object('dialable_now', jsonb_array_length(v_reasons) = 0,
                              'next_at', CASE WHEN NOT v_blocked THEN v_next END,
                              'reasons', v_reasons);
END
$$;

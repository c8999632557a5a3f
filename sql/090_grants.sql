-- Who may call what. Functions are SECURITY DEFINER; callers need EXECUTE only.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA batchctl FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    batchctl.create_batch(uuid, jsonb, jsonb, uuid),
    batchctl.create_batch_from_rows(uuid, batchctl.new_entry[], jsonb, uuid),
    batchctl.add_entries(uuid, uuid, batchctl.new_entry[]),
    batchctl.start_batch(uuid, uuid),
    batchctl.pause_batch(uuid, uuid),
    batchctl.resume_batch(uuid, uuid),
    batchctl.cancel_batch(uuid, uuid, text),
    batchctl.cancel_entry(uuid, uuid),
    batchctl.batch_status(uuid, uuid),
    batchctl.add_dnc(uuid, text),
    batchctl.report_summary(uuid),
    batchctl.record_intake_refusals(uuid, uuid, jsonb),
    batchctl.set_policy(uuid, jsonb),
    batchctl.get_policy(uuid),
    batchctl.explain_entry(uuid, uuid),
    batchctl.create_trunk(uuid, text, text, numeric, integer),
    batchctl.update_trunk(uuid, uuid, jsonb),
    batchctl.trunk_status(uuid, uuid),
    batchctl.add_caller_ids(uuid, uuid, text[], integer),
    batchctl.remove_caller_ids(uuid, uuid, text[]),
    batchctl.add_webhook(uuid, text, text[], text),
    batchctl.remove_webhook(uuid, uuid),
    batchctl.list_webhooks(uuid),
    batchctl.webhook_deliveries(uuid, uuid, integer),
    batchctl.replay_webhooks(uuid, uuid, timestamptz)
TO batchctl_tenant, batchctl_worker;

-- Row-level security calls it for every tenant query; it tells a session its own tenant only.
GRANT EXECUTE ON FUNCTION batchctl.session_tenant() TO batchctl_tenant;

GRANT EXECUTE ON FUNCTION
    batchctl.create_tenant(text, integer, text),
    batchctl.fail_batch(uuid, uuid, text),
    batchctl.claim_entries(text, integer, integer),
    batchctl.mark_dispatched(uuid, text, text),
    batchctl.mark_dispatched_many(uuid[], text[], text[]),
    batchctl.mark_dispatch_failed(uuid, text, boolean),
    batchctl.mark_dispatch_unknown(uuid, text),
    batchctl.sweep(timestamptz),
    batchctl.claim_report(text),
    batchctl.report_sent(uuid),
    batchctl.report_failed(uuid, text),
    batchctl.claim_report_now(uuid, text, text[]),
    batchctl.claim_hangups(text, integer),
    batchctl.hangup_done(text),
    batchctl.hangup_failed(text, text),
    batchctl.room_call_over(text, text),
    batchctl.call_log_id(text),
    batchctl.claim_webhook_deliveries(text, integer, integer),
    batchctl.record_webhook_attempt(uuid, bigint, integer, integer, text, text, numeric)
TO batchctl_worker;

-- The voice agent reports its calls' statuses and nothing else.
GRANT EXECUTE ON FUNCTION
    batchctl.report_call_status(uuid, text, jsonb),
    batchctl.report_call_statuses(uuid[], text[], jsonb[])
TO batchctl_agent, batchctl_worker;

-- Granted to no role: prune(interval, integer, timestamptz), which deletes history for good, and
-- grant_tenant_login / revoke_tenant_login, which decide who acts for which tenant. The owner
-- (who ran `batchctl db upgrade`) runs them, prune from cron or from a pg_cron job it schedules;
-- grant EXECUTE to a dedicated role if another should.

GRANT SELECT ON batchctl.batch_overview, batchctl.report_entries, batchctl.report_calls
    TO batchctl_tenant, batchctl_worker;

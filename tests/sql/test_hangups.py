"""The hang-up outbox (sql/055_hangups.sql) and the call log ids known before the call exists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from batchctl.identifiers import call_log_id
from checks import Conn
from pgtools import one_row
from sqlapi import SqlApi, phones


@pytest.mark.parametrize("room", ["batchctl-00000000-0000-0000-0000-000000000001-1", "räum ✓", ""])
def test_call_log_id_is_the_same_in_python_and_sql(conn: Conn, room: str) -> None:
    row = one_row(conn, "select batchctl.call_log_id(%s) as id", (room,))
    assert row["id"] == call_log_id(room)


def test_mark_dispatched_creates_the_call_log_named_by_its_room(api: SqlApi) -> None:
    tenant = api.create_tenant()
    api.create_batch(tenant, phones(1))
    (claim,) = api.claim()
    assert api.mark_dispatched(claim.entry_id, claim.room_name) == call_log_id(claim.room_name)


def test_cancel_batch_queues_one_hangup_per_live_call_and_notifies(
    db_url: str, api: SqlApi
) -> None:
    tenant = api.create_tenant(max_concurrent_calls=3)
    batch = api.create_batch(tenant, phones(5))
    calls = api.dispatch_all()
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen batchctl_hangup")
        api.cancel_batch(tenant, batch, "withdrawn")
        rooms = {n.payload for n in listener.notifies(timeout=2, stop_after=3)}
    claimed = api.claim_hangups()
    assert {h["room_name"] for h in claimed} == rooms
    assert {h["call_log_id"] for h in claimed} == set(calls)
    assert {h["reason"] for h in claimed} == {"batch_cancelled"}
    assert api.claim_hangups() == [], "a claimed hang-up is invisible for a while"


def test_hangup_done_cancels_the_live_call_and_finishes_the_batch(api: SqlApi) -> None:
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(4), {"report_to": ["ops@example.com"]})
    for call in api.dispatch_all():
        api.report(call, "ongoing")
    assert api.cancel_batch(tenant, batch) == 2
    assert api.batch_status(tenant, batch)["finished_at"] is None, "live calls are still up"
    for h in api.claim_hangups():
        api.hangup_done(h["room_name"])
        api.hangup_done(h["room_name"])  # a repeated acknowledgement changes nothing
    status = api.batch_status(tenant, batch)
    assert (status["status"], status["cancelled"], status["pending"]) == ("cancelled", 4, 0)
    assert status["finished_at"] is not None
    calls = api.conn.execute("select status::text, detail from batchctl.call_logs").fetchall()
    assert [(c["status"], c["detail"]["error"]) for c in calls] == [
        ("cancelled", "hung up: batch_cancelled")
    ] * 2


def test_cancel_entry_on_a_live_call_hangs_it_up_and_never_retries(api: SqlApi) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {"retry_on": ["busy"], "max_attempts": 3})
    (call,) = api.dispatch_all()
    entry = one_row(api.conn, "select id from batchctl.batch_entries")["id"]
    assert api.cancel_entry(tenant, entry) is False
    (h,) = api.claim_hangups()
    assert (h["call_log_id"], h["reason"]) == (call, "entry_cancelled")
    api.hangup_done(h["room_name"])
    assert api.batch_status(tenant, batch)["cancelled"] == 1


def test_failed_hangup_is_retried_with_backoff(api: SqlApi) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    api.dispatch_all()
    api.cancel_batch(tenant, batch)
    (h,) = api.claim_hangups()
    api.conn.execute("select batchctl.hangup_failed(%s, 'livekit down')", (h["room_name"],))
    row = one_row(
        api.conn,
        "select attempts, last_error, next_attempt_at - now() as wait from batchctl.hangups",
    )
    assert (row["attempts"], row["last_error"]) == (1, "livekit down")
    assert timedelta(seconds=1) < row["wait"] <= timedelta(seconds=2)
    api.conn.execute("update batchctl.hangups set next_attempt_at = now()")
    (again,) = api.claim_hangups()
    assert (again["room_name"], again["attempt"]) == (h["room_name"], 2)


def test_sweep_timeouts_queue_hangups_and_done_adds_no_ignored_report(api: SqlApi) -> None:
    tenant = api.create_tenant()
    api.create_batch(tenant, phones(1), {"ringing_timeout_s": 60})
    (call,) = api.dispatch_all()
    api.report(call, "ringing")
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert api.sweep(later)["ringing_timeouts"] == 1
    (h,) = api.claim_hangups()
    assert (h["call_log_id"], h["reason"]) == (call, "ringing_timeout")
    api.hangup_done(h["room_name"])
    ignored = one_row(api.conn, "select count(*) as n from batchctl.events where ignored")
    assert ignored["n"] == 0, "the call had already failed: nothing to report"


def test_claim_hangups_rejects_a_bad_limit(api: SqlApi) -> None:
    with pytest.raises(psycopg.Error) as info:
        api.claim_hangups(limit=0)
    assert info.value.sqlstate == "BC001"

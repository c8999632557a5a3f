"""Opt-outs: a call's report with "opt_out": true in its detail (report_call_status, or
report_call_statuses) puts the number on the tenant's do-not-call list in the same transaction,
ends the number's other entries in every batch ('opted_out': queued and claimed ones at once,
live calls through a hang-up), and marks the call's own entry, which is never dialled again."""

from __future__ import annotations

import json
import random
import threading
import time
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
import pytest

from batchctl.client.rows import StatusReport
from checks import Conn, all_rows, later, rejected
from concurrent_calls import connect, run_threads
from invariants import assert_invariants
from pgtools import one_row
from sqlapi import SqlApi, live_calls, phones

NUMBER = "+14155550000"  # phones(...)'s first number
RETRY = {"retry_on": ["no_answer", "busy"], "max_attempts": 3, "retry_delay_s": 0}


def entries_of_number(conn: Conn, phone: str = NUMBER) -> dict[UUID, dict[str, Any]]:
    """Per batch, the entry of the number."""
    rows = conn.execute(
        """select batch_id, id, status::text as status, last_error, opted_out_at,
                  cancel_requested, call_log_id
             from batchctl.batch_entries where to_phone = %s""",
        (phone,),
    ).fetchall()
    return {r["batch_id"]: r for r in rows}


def dnc_rows(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute(
        """select tenant_id, phone, source, call_log_id, created_at
             from batchctl.dnc_numbers order by phone"""
    ).fetchall()


def calls_to(conn: Conn, phone: str = NUMBER) -> int:
    row = one_row(
        conn,
        """select count(*) as n from batchctl.call_logs c
             join batchctl.batch_entries e on e.id = c.entry_id where e.to_phone = %s""",
        (phone,),
    )
    return int(row["n"])


def three_batches(api: SqlApi, tenant: UUID) -> tuple[UUID, UUID, UUID]:
    """The calling batch (retries on no_answer and busy), then two more holding the number."""
    calling = api.create_batch(tenant, phones(2), RETRY)
    others = [api.create_batch(tenant, phones(2, start=10) + phones(1), RETRY) for _ in range(2)]
    return calling, others[0], others[1]


def test_opt_out_during_a_call_lists_the_number_and_ends_its_other_entries(api: SqlApi) -> None:
    """The opt-out during the call: listed (source, call, time), the number's queued entries in
    two other batches cancelled, the call's entry marked and, when its call ends with an outcome
    the batch would retry, never dialled again. (A live call of the number elsewhere cannot be
    up at the same time, claims never allow it: see the late opt-out below.)"""
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, second, third = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    assert call is not None
    api.report(call, "ringing")
    # The other batches' entries of the number wait: it is on a call.
    assert {b: e["status"] for b, e in entries_of_number(conn).items()} == {
        calling: "dispatched", second: "queued", third: "queued"
    }  # fmt: skip

    assert api.report(call, "ongoing", {"opt_out": True}) == "dispatched"

    (dnc,) = dnc_rows(conn)
    assert (dnc["tenant_id"], dnc["phone"], dnc["source"], dnc["call_log_id"]) == (
        tenant, NUMBER, "opt_out", call
    )  # fmt: skip
    entries = entries_of_number(conn)
    own = entries[calling]
    assert (own["status"], own["cancel_requested"]) == ("dispatched", False), "its call goes on"
    assert own["opted_out_at"] is not None and own["opted_out_at"] >= dnc["created_at"]
    for batch in (second, third):
        assert (entries[batch]["status"], entries[batch]["last_error"]) == (
            "cancelled", "opted_out"
        )  # fmt: skip
        assert entries[batch]["opted_out_at"] is None
    assert api.claim_hangups() == [], "the call that carried the opt-out is not hung up"
    events = conn.execute(
        """select reason from batchctl.events
            where object = 'entry' and to_status = 'cancelled' and batch_id in (%s, %s)""",
        (second, third),
    ).fetchall()
    assert [e["reason"] for e in events] == ["opt_out: opted_out"] * 2
    assert one_row(conn, "select detail from batchctl.call_logs where id = %s", (call,))[
        "detail"
    ] == {"opt_out": True}
    # The rest of the batches goes on.
    assert api.batch_status(tenant, second)["pending"] == 2

    # The call ends with an outcome the batch retries: the number is not dialled again.
    assert api.report(call, "no_answer") == "cancelled"
    own = entries_of_number(conn)[calling]
    assert (own["status"], own["last_error"]) == ("cancelled", "dnc")
    api.sweep(later(hours=1))
    for _ in range(3):
        for c in api.dispatch_all():
            api.finish_call(c, "no_answer")
    assert calls_to(conn) == 1
    assert all(e["status"] == "cancelled" for e in entries_of_number(conn).values())
    assert [r["source"] for r in dnc_rows(conn)] == ["opt_out"]


@pytest.mark.parametrize(
    ("outcome", "entry_after"),
    [
        ("ended", ("completed", None)),
        ("busy", ("cancelled", "dnc")),
        ("voicemail", ("declined", None)),
    ],
)
def test_opt_out_in_the_final_report_ends_the_call_as_reported_and_never_retries(
    api: SqlApi, outcome: str, entry_after: tuple[str, str | None]
) -> None:
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, second, third = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    api.report(call, "ringing")
    api.report(call, "ongoing")
    assert api.report(call, outcome, {"opt_out": True}) == entry_after[0]
    entries = entries_of_number(conn)
    assert (entries[calling]["status"], entries[calling]["last_error"]) == entry_after
    assert entries[calling]["opted_out_at"] is not None
    assert {entries[b]["last_error"] for b in (second, third)} == {"opted_out"}
    assert [(r["source"], r["call_log_id"]) for r in dnc_rows(conn)] == [("opt_out", call)]
    for c in api.dispatch_all():
        api.finish_call(c)
    assert calls_to(conn) == 1


def test_a_late_opt_out_hangs_up_the_numbers_live_call_in_another_batch(api: SqlApi) -> None:
    """The agent's report with the opt-out arrives after the call ended (the webhook's was
    first) and after another batch dialled the number: that call is hung up, its entry ends
    cancelled when it ends, never retried; the number's queued entry elsewhere is cancelled."""
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, second, third = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    api.finish_call(call, "ended")
    api.dispatch_all()
    live = [b for b, e in entries_of_number(conn).items() if e["status"] == "dispatched"]
    assert len(live) == 1 and live[0] in (second, third)
    (live_batch,) = live
    (queued_batch,) = {second, third} - {live_batch}
    live_call = entries_of_number(conn)[live_batch]["call_log_id"]
    api.report(live_call, "ongoing")

    # The status is late (ignored); the opt-out is not.
    assert api.report(call, "ongoing", {"opt_out": True}) == "completed"
    entries = entries_of_number(conn)
    assert entries[calling]["opted_out_at"] is None, "a finished entry never changes"
    assert (entries[queued_batch]["status"], entries[queued_batch]["last_error"]) == (
        "cancelled", "opted_out"
    )  # fmt: skip
    assert (entries[live_batch]["status"], entries[live_batch]["cancel_requested"]) == (
        "dispatched", True
    )  # fmt: skip
    assert [(r["source"], r["call_log_id"]) for r in dnc_rows(conn)] == [("opt_out", call)]

    (hangup,) = api.claim_hangups()
    assert (hangup["call_log_id"], hangup["reason"]) == (live_call, "opted_out")
    api.hangup_done(hangup["room_name"])
    hung_up = entries_of_number(conn)[live_batch]
    assert (hung_up["status"], hung_up["last_error"]) == ("cancelled", "opted_out")
    detail = one_row(conn, "select detail from batchctl.call_logs where id = %s", (live_call,))
    assert detail["detail"] == {"error": "hung up: opted_out"}
    for c in api.dispatch_all():
        api.finish_call(c)
    assert calls_to(conn) == 2


def test_a_live_call_elsewhere_that_ends_first_is_not_retried(api: SqlApi) -> None:
    """The hung-up call reports a retryable outcome before the hang-up lands: no retry."""
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, _, _ = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    api.finish_call(call, "ended")
    api.dispatch_all()
    (live_batch,) = [b for b, e in entries_of_number(conn).items() if e["status"] == "dispatched"]
    live_call = entries_of_number(conn)[live_batch]["call_log_id"]
    api.report(call, "ended", {"opt_out": True})
    assert api.report(live_call, "busy") == "declined"
    for c in api.dispatch_all():
        api.finish_call(c)
    assert calls_to(conn) == 2


def test_opt_out_through_the_set_form(api: SqlApi) -> None:
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, second, third = three_batches(api, tenant)
    calls = api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    other = next(c for c in calls if c != call)
    results = api.report_call_statuses(
        [
            StatusReport(other, "ringing", {"opt_out": "yes"}),
            StatusReport(call, "ringing"),
            StatusReport(call, "ongoing", {"opt_out": True}),
            StatusReport(other, "ringing", {"opt_out": False}),
        ]
    )
    assert [(r.status, r.error) for r in results] == [
        ("dispatched", 'detail.opt_out: expected true or false, got "yes"'),
        ("dispatched", None),
        ("dispatched", None),
        ("dispatched", None),
    ]
    assert [(r["phone"], r["source"], r["call_log_id"]) for r in dnc_rows(conn)] == [
        (NUMBER, "opt_out", call)
    ]
    entries = entries_of_number(conn)
    assert entries[calling]["status"] == "dispatched"
    assert entries[calling]["opted_out_at"] is not None
    assert {(entries[b]["status"], entries[b]["last_error"]) for b in (second, third)} == {
        ("cancelled", "opted_out")
    }
    assert api.claim_hangups() == []
    # The final report through the set form too: the retry meets the list.
    (result,) = api.report_call_statuses([StatusReport(call, "no_answer", {"opt_out": True})])
    assert (result.status, result.error) == ("cancelled", None)
    for c in api.dispatch_all():
        api.finish_call(c)
    assert calls_to(conn) == 1
    assert len(dnc_rows(conn)) == 1


def test_a_final_set_form_opt_out_with_a_retry_is_never_retried(api: SqlApi) -> None:
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, _, _ = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    (result,) = api.report_call_statuses([StatusReport(call, "busy", {"opt_out": True})])
    assert (result.status, result.error) == ("cancelled", None)
    own = entries_of_number(conn)[calling]
    assert (own["last_error"], own["opted_out_at"] is not None) == ("dnc", True)


def test_opt_out_false_changes_nothing_else(api: SqlApi) -> None:
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, _, _ = three_batches(api, tenant)
    calls = api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    before = entries_of_number(conn)
    assert api.report(call, "ongoing", {"opt_out": False}) == "dispatched"
    api.report_call_statuses([StatusReport(c, "ringing", {"opt_out": False}) for c in calls])
    assert dnc_rows(conn) == []
    after = entries_of_number(conn)
    assert all(e["opted_out_at"] is None for e in after.values())
    assert {b: e["status"] for b, e in after.items()} == {b: e["status"] for b, e in before.items()}
    assert api.finish_call(call, "busy") == "queued", "retried as usual"


@pytest.mark.parametrize("bad", ["yes", "true", 1, None, [True], {"v": True}])
def test_a_malformed_opt_out_is_refused_and_changes_nothing(api: SqlApi, bad: Any) -> None:
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, _, _ = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    got = json.dumps(bad)
    for status in ("ongoing", "ended", "no_answer"):
        rejected(
            conn,
            "BC001",
            partial(api.report, call, status, {"opt_out": bad}),
            f"p_detail.opt_out: expected true or false, got {got}",
        )
    before = all_rows(conn)
    (result,) = api.report_call_statuses([StatusReport(call, "ended", {"opt_out": bad})])
    assert (result.status, result.error) == (
        "dispatched", f"detail.opt_out: expected true or false, got {got}"
    )  # fmt: skip
    assert all_rows(conn) == before


def test_add_dnc_records_its_source_and_keeps_its_row_on_a_later_opt_out(api: SqlApi) -> None:
    """add_dnc leaves a live call to end (as before); an opt-out on that call keeps the list's
    first row (listed by add_dnc) and still marks the entry."""
    conn = api.conn
    tenant = api.create_tenant("acme", 10)
    calling, second, third = three_batches(api, tenant)
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    api.add_dnc(tenant, NUMBER)
    entries = entries_of_number(conn)
    assert (entries[calling]["status"], entries[calling]["cancel_requested"]) == (
        "dispatched", False
    )  # fmt: skip
    assert {entries[b]["last_error"] for b in (second, third)} == {"dnc"}
    assert [(r["source"], r["call_log_id"]) for r in dnc_rows(conn)] == [("add_dnc", None)]
    assert api.claim_hangups() == []

    api.report(call, "ongoing", {"opt_out": True})
    assert [(r["source"], r["call_log_id"]) for r in dnc_rows(conn)] == [("add_dnc", None)]
    assert entries_of_number(conn)[calling]["opted_out_at"] is not None
    api.add_dnc(tenant, NUMBER)  # again: nothing changes
    assert len(dnc_rows(conn)) == 1
    assert api.report(call, "ended") == "completed"


def test_an_opt_out_touches_only_its_own_tenant(api: SqlApi) -> None:
    conn = api.conn
    acme, other = api.create_tenant("acme", 10), api.create_tenant("other", 10)
    calling, _, _ = three_batches(api, acme)
    theirs = api.create_batch(other, phones(1), {"autostart": False})
    api.dispatch_all()
    call = entries_of_number(conn)[calling]["call_log_id"]
    api.report(call, "ongoing", {"opt_out": True})
    assert [r["tenant_id"] for r in dnc_rows(conn)] == [acme]
    assert entries_of_number(conn)[theirs]["status"] == "queued"


def test_concurrent_opt_outs_of_one_number_neither_deadlock_nor_list_it_twice(
    db_url: str, conn: Conn
) -> None:
    """Each live call's opt-out is reported twice at the same moment (the agent's own report,
    and the webhook receiver's set form) while claims, reports, sweeps and hang-ups run: no
    deadlock (40P01), one list row per number, and no entry of an opted-out number is dialled
    afterwards."""
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 30)
    opts = {**RETRY, "wave_size": 10, "pickup_timeout_s": 1}
    batches = [api.create_batch(tenant, phones(20), opts) for _ in range(3)]
    opted = api.dispatch_all()
    assert len(opted) >= 8
    for call in opted:  # out of the sweep's pickup timeout
        api.report(call, "ringing")
    opted_phones = {
        r["to_phone"]
        for r in conn.execute(
            "select to_phone from batchctl.batch_entries where call_log_id = any(%s)", (opted,)
        ).fetchall()
    }
    stop = threading.Event()
    errors: list[tuple[str, str | None, str]] = []
    elock = threading.Lock()

    def record(op: str, exc: psycopg.Error) -> None:
        with elock:
            errors.append((op, exc.sqlstate, str(exc)))

    barrier = threading.Barrier(2)

    def single(_: int) -> None:
        with connect(db_url) as c:
            w = SqlApi(c)
            for call in opted:
                barrier.wait()
                try:
                    w.report(call, "ongoing", {"opt_out": True})
                except psycopg.Error as exc:
                    record("report", exc)

    def set_form(_: int) -> None:
        with connect(db_url) as c:
            w = SqlApi(c)
            for call in opted:
                barrier.wait()
                try:
                    w.report_call_statuses([StatusReport(call, "ongoing", {"opt_out": True})])
                except psycopg.Error as exc:
                    record("report_call_statuses", exc)

    def claimer(i: int) -> None:
        rng = random.Random(i)
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                try:
                    for cl in w.claim(f"c{i}", limit=4, lease_seconds=1):
                        if rng.random() < 0.8:
                            w.mark_dispatched(cl.entry_id, cl.room_name)
                    for call in live_calls(c):
                        if call not in opted and rng.random() < 0.5:
                            w.report(call, rng.choice(["no_answer", "busy", "ended"]))
                except psycopg.Error as exc:
                    record("claim", exc)
                time.sleep(0.002)

    def sweeper(_: int) -> None:
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                try:
                    w.sweep(later(seconds=2))
                    for h in w.claim_hangups("hanger"):
                        w.hangup_done(h["room_name"])
                except psycopg.Error as exc:
                    record("sweep", exc)
                time.sleep(0.005)

    def run(i: int) -> None:
        if i < 2:
            try:
                (single, set_form)[i](i)
            finally:
                time.sleep(0.3)
                stop.set()
        else:
            (claimer, claimer, sweeper)[i - 2](i)

    run_threads(5, run)

    deadlocks = [e for e in errors if e[1] == "40P01"]
    assert not deadlocks, f"deadlocks: {deadlocks[:3]}"
    # A claim the opt-out cancelled before its acknowledgement: the claim is gone.
    unexpected = [e for e in errors if e[1] != "BC004"]
    assert not unexpected, f"unexpected errors: {unexpected[:5]}"

    rows = dnc_rows(conn)
    assert sorted(r["phone"] for r in rows) == sorted(opted_phones)
    assert {(r["source"], r["call_log_id"] in opted) for r in rows} == {("opt_out", True)}
    # Nothing of an opted-out number is left to dial but its own call, which goes on.
    left = conn.execute(
        """select to_phone, status::text as status, call_log_id, opted_out_at
             from batchctl.batch_entries
            where to_phone = any(%s) and status not in ('completed', 'failed', 'declined',
                                                        'cancelled')""",
        (list(opted_phones),),
    ).fetchall()
    assert all(
        r["status"] == "dispatched" and r["call_log_id"] in opted and r["opted_out_at"]
        for r in left
    ), left
    assert_invariants(conn)

    # Drain: every opted-out call ends with a retryable outcome, the rest is dialled and ends.
    for call in opted:
        api.report(call, "no_answer")
    for _ in range(30):
        for call in live_calls(conn):
            api.finish_call(call)
        api.sweep(later(minutes=5))
        for call in api.dispatch_all():
            api.finish_call(call)
        if not conn.execute("select 1 from batchctl.batches where finished_at is null").fetchone():
            break
    dialled = conn.execute(
        """select e.to_phone, count(*) as n from batchctl.call_logs c
             join batchctl.batch_entries e on e.id = c.entry_id
            where e.to_phone = any(%s) group by e.to_phone""",
        (list(opted_phones),),
    ).fetchall()
    assert {r["n"] for r in dialled} == {1}, "an opted-out number was dialled again"
    assert all(api.batch_status(tenant, b)["finished_at"] is not None for b in batches), (
        "the batches finish"
    )

"""Batched acknowledgements and reports (mark_dispatched_many, report_call_statuses) and the
daemon's completer that feeds them: each input answered as the one-at-a-time call would, in
input order, in one transaction; a bad item is refused alone (its row says why), and never
costs the others theirs."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import psycopg
import pytest

from batchctl.client.aio import AsyncClient
from batchctl.client.rows import Ack
from batchctl.completer import Completer
from batchctl.database import async_pool
from invariants import assert_invariants
from pgtools import one_row
from sqlapi import SqlApi, phones

COUNTS = """
    select (select count(*) from batchctl.events) as events,
           (select array_agg(status::text order by id) from batchctl.batch_entries) as entries,
           (select array_agg(status::text order by id) from batchctl.call_logs) as calls"""


def counts(conn: Any) -> dict[str, Any]:
    return conn.execute(COUNTS).fetchone()


def rejected(conn: Any, call: Any, *needles: str) -> str:
    before = counts(conn)
    with pytest.raises(psycopg.Error) as info:
        call()
    assert info.value.sqlstate == "BC001", info.value
    assert counts(conn) == before, "a rejected call changed something"
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_acknowledgements_are_answered_in_input_order(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant(max_concurrent_calls=5)
    api.create_batch(tenant, phones(5))
    a, b, c, d, _ = api.claim()
    earlier = api.mark_dispatched(c.entry_id, c.room_name)
    api.cancel_entry(tenant, d.entry_id)  # its claim is gone
    unknown = uuid.uuid4()
    answers = api.mark_dispatched_many(
        [
            (b.entry_id, b.room_name),
            (c.entry_id, c.room_name),  # repeated: the same call
            (unknown, "batchctl-x-1"),
            (d.entry_id, d.room_name),
            (a.entry_id, a.room_name),
            (b.entry_id, b.room_name),  # twice in one call
        ]
    )
    call_b, call_a = (
        conn.execute(
            "select call_log_id from batchctl.batch_entries where id = %s", (e.entry_id,)
        ).fetchone()["call_log_id"]
        for e in (b, a)
    )
    assert answers == [
        (call_b, "dispatched"),
        (earlier, "dispatched"),
        (None, None),
        (None, "cancelled"),
        (call_a, "dispatched"),
        (call_b, "dispatched"),
    ]
    dispatched = conn.execute(
        """select count(*) as n from batchctl.events
            where object = 'entry' and to_status = 'dispatched'"""
    ).fetchone()["n"]
    assert dispatched == 3, "one transition per entry, the repeats add none"
    assert_invariants(conn)


def test_a_wrong_room_is_refused_alone(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant(max_concurrent_calls=3)
    api.create_batch(tenant, phones(3))
    a, b, _ = api.claim()
    rows = conn.execute(
        "select * from batchctl.mark_dispatched_many(%s, %s)",
        ([b.entry_id, a.entry_id, b.entry_id], [a.room_name, a.room_name, None]),
    ).fetchall()
    wrong = f"room {a.room_name} is not the claimed attempt's room {b.room_name}"
    assert [(r["call_log_id"] is not None, r["status"], r["error"]) for r in rows] == [
        (False, "running", wrong),
        (True, "dispatched", None),
        (False, "running", f"room null is not the claimed attempt's room {b.room_name}"),
    ]
    assert api.mark_dispatched(b.entry_id, b.room_name) is not None  # b's own room still works
    assert_invariants(conn)


def test_acknowledgements_need_one_room_per_entry(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant()
    api.create_batch(tenant, phones(1))
    (a,) = api.claim()
    for rooms, dispatch_ids in (([], None), ([a.room_name], ["d1", "d2"]), (None, None)):
        rejected(
            conn,
            lambda rooms=rooms, ids=dispatch_ids: conn.execute(
                "select * from batchctl.mark_dispatched_many(%s, %s, %s)",
                ([a.entry_id], rooms, ids),
            ),
            "expected one per entry id (1)",
        )


def test_reports_of_one_call_apply_in_order(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant(max_concurrent_calls=3)
    batch = api.create_batch(tenant, phones(3))
    first, second, third = api.dispatch_all()
    api.report(third, "ended")
    statuses = api.report_many(
        [
            (first, "ringing"),
            (second, "ongoing"),
            (first, "ongoing"),
            (third, "ongoing"),  # after its end: ignored
            (first, "ended"),
            (uuid.uuid4(), "ended"),  # unknown: answered null, the others still apply
            (first, "ringing"),  # after the end in this very call: ignored
        ]
    )
    assert statuses == ["completed", "dispatched", "completed", "completed", "completed", None,
                        "completed"]  # fmt: skip
    calls = {
        row["id"]: row
        for row in conn.execute(
            "select id, status::text, answered_at, ended_at from batchctl.call_logs"
        ).fetchall()
    }
    assert calls[first]["status"] == "ended" and calls[first]["answered_at"] is not None
    assert calls[second]["status"] == "ongoing"
    moves = conn.execute(
        """select from_status::text, to_status::text, ignored from batchctl.events
            where object = 'call' and object_id = %s and from_status is not null order by id""",
        (first,),
    ).fetchall()
    assert [(m["from_status"], m["to_status"], m["ignored"]) for m in moves] == [
        ("in_queue", "ringing", False),
        ("ringing", "ongoing", False),
        ("ongoing", "ended", False),
        ("ended", "ringing", True),
    ]
    assert api.batch_status(tenant, batch)["completed"] == 2
    assert_invariants(conn)


BAD_REPORTS = [  # (status, detail) -> what the refusal says
    (("hung_up", {}), "status: unknown call status 'hung_up', allowed: in_queue"),
    (("ended", {"duration_seconds": "long"}), "detail.duration_seconds: expected a number of"),
    (("ended", {"duration_seconds": 1e12}), "seconds from 0 to 604800, got 1000000000000"),
    (("ended", {"duration_seconds": -5}), "seconds from 0 to 604800, got -5"),
    (("ended", {"x": "y" * 1_100_000}), "detail: is 1100"),
    (("ended", {"analysis": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
     "detail: is nested more than 32 levels deep"),
]  # fmt: skip


@pytest.mark.parametrize(("report", "problem"), BAD_REPORTS)
def test_a_malformed_report_is_refused_alone(
    api: SqlApi, conn: Any, report: tuple[str, dict[str, Any]], problem: str
) -> None:
    """The bad report is not applied and its row says why; the other call's report in the same
    flush is applied. Alone, report_call_status refuses it with BC001 and changes nothing."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(2))
    first, second = api.dispatch_all()
    status, detail = report
    rejected(conn, lambda: api.report(second, status, detail), problem)
    rows = conn.execute(
        "select * from batchctl.report_call_statuses(%s, %s, %s::jsonb[])",
        ([first, second], ["ended", status], ["{}", json.dumps(detail)]),
    ).fetchall()
    assert [(r["status"], r["error"]) for r in rows] == [
        ("completed", None),
        ("dispatched", rows[1]["error"]),
    ]
    assert problem in rows[1]["error"]
    live = conn.execute("select status::text from batchctl.call_logs where id = %s", (second,))
    assert live.fetchone()["status"] == "in_queue", "the bad report changed its call"
    assert api.batch_status(tenant, batch)["completed"] == 1
    unknown = conn.execute(
        "select * from batchctl.report_call_statuses(%s, %s)", ([uuid.uuid4()], ["ended"])
    ).fetchone()
    assert (unknown["status"], unknown["error"]) == (None, "call log not found")
    assert_invariants(conn)


def test_the_arrays_of_a_flush_must_match(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant(max_concurrent_calls=2)
    api.create_batch(tenant, phones(2))
    first, second = api.dispatch_all()
    rejected(
        conn,
        lambda: conn.execute(
            "select * from batchctl.report_call_statuses(%s, %s)", ([first, second], ["ended"])
        ),
        "expected one per call log id (2)",
    )


def test_the_last_reports_in_one_call_finish_the_batch_once(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant(max_concurrent_calls=4)
    batch = api.create_batch(tenant, phones(4), {"report_to": ["ops@example.com"]})
    calls = api.dispatch_all()
    assert (
        api.report_many([(c, "ended") for c in calls] + [(calls[0], "failed")]) == ["completed"] * 5
    )
    status = api.batch_status(tenant, batch)
    assert (status["status"], status["completed"]) == ("completed", 4)
    reports = conn.execute("select count(*) as n from batchctl.reports").fetchone()["n"]
    assert reports == 1
    assert_invariants(conn)


def test_overlapping_flushes_in_opposite_orders_do_not_deadlock(db_url: str, api: SqlApi) -> None:
    """Two completers ending the same calls in opposite orders: the lock order (batches, then
    call logs by id) makes one wait for the other; neither deadlocks, each call ends once."""
    tenants = [api.create_tenant(f"t{i}", max_concurrent_calls=20) for i in range(3)]
    for t in tenants:
        api.create_batch(t, phones(20, start=100 * tenants.index(t)))
    calls = api.dispatch_all(limit=60)
    errors: list[BaseException] = []

    def flush(order: list[uuid.UUID]) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                for _ in range(5):
                    conn.execute(
                        "select * from batchctl.report_call_statuses(%s, %s)",
                        (order, ["ended"] * len(order)),
                    ).fetchall()
        except BaseException as exc:  # a deadlock (40P01) fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=flush, args=(o,)) for o in (calls, calls[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ended = one_row(
        api.conn,
        """select count(*) as n from batchctl.events
            where object = 'call' and to_status = 'ended' and not ignored""",
    )["n"]
    assert ended == len(calls)
    assert_invariants(api.conn)


def test_completer_sends_what_piles_up_during_a_flush_together(db_url: str, api: SqlApi) -> None:
    """30 dispatch tasks acknowledging at once reach the database in a few calls, each task
    with its own answer; a flush that fails fails its own waiters only."""
    tenant = api.create_tenant(max_concurrent_calls=30)
    api.create_batch(tenant, phones(30), {"wave_size": 30})
    claims = api.claim(limit=30)
    assert len(claims) == 30
    flushes: list[int] = []

    async def run() -> list[Any]:
        async with async_pool(db_url, "test", max_size=2) as pool:
            client = AsyncClient(pool)

            async def flush(acks: list[Ack]) -> Any:
                flushes.append(len(acks))
                return await client.mark_dispatched_many(acks)

            completer = Completer(flush, max_batch=20)
            return await asyncio.gather(
                *(completer.submit(Ack(c.entry_id, c.room_name, "d")) for c in claims)
            )

    answers = asyncio.run(run())
    assert [a.status for a in answers] == ["dispatched"] * 30
    assert len({a.call_log_id for a in answers}) == 30
    assert sum(flushes) == 30 and len(flushes) <= 3 and max(flushes) <= 20, flushes
    assert_invariants(api.conn)


def test_completer_fails_only_the_waiters_of_a_failed_flush() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0)
        if 0 in items:
            raise ValueError("refused")
        return [i * 10 for i in items]

    async def run() -> list[Any]:
        completer: Completer[int, int] = Completer(flush)
        first = asyncio.gather(completer.submit(0), completer.submit(1), return_exceptions=True)
        await asyncio.sleep(0)  # the first flush is under way; these pile up for the next
        later = asyncio.gather(completer.submit(2), completer.submit(3))
        return [*(await first), *(await later)]

    first, second, *later = asyncio.run(run())
    assert isinstance(first, ValueError) and isinstance(second, ValueError)
    assert later == [20, 30]
    assert calls == [[0, 1], [2, 3]]


def test_dispatch_ids_are_optional(api: SqlApi, conn: Any) -> None:
    tenant = api.create_tenant()
    api.create_batch(tenant, phones(2))
    a, b = api.claim()
    rows = conn.execute(
        "select call_log_id, status from batchctl.mark_dispatched_many(%s, %s)",
        ([a.entry_id, b.entry_id], [a.room_name, b.room_name]),
    ).fetchall()
    assert [r["status"] for r in rows] == ["dispatched", "dispatched"]
    ids = conn.execute("select dispatch_id from batchctl.call_logs").fetchall()
    assert [r["dispatch_id"] for r in ids] == [None, None]
    assert_invariants(conn)

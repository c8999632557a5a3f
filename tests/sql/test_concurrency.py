"""Concurrency: several connections claiming, reporting, cancelling and sweeping at once.

Each thread has its own psycopg connection to the test database; the checks run from a separate
connection between rounds, against the rows themselves (not the counters under test)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from checks import Conn
from concurrent_calls import connect, run_threads
from invariants import assert_invariants
from pgtools import one_row
from sqlapi import Claim, SqlApi, live_calls, phones

LIVE_CALL = ("in_queue", "ringing", "ongoing")


def in_flight(conn: psycopg.Connection[Any]) -> tuple[dict[UUID, int], dict[UUID, int]]:
    """Real in-flight counts (running + dispatched entries) per tenant and per batch."""
    rows = conn.execute(
        """select tenant_id, batch_id, count(*) as n from batchctl.batch_entries
            where status in ('running', 'dispatched') group by tenant_id, batch_id"""
    ).fetchall()
    per_tenant: Counter[UUID] = Counter()
    per_batch: dict[UUID, int] = {}
    for r in rows:
        per_tenant[r["tenant_id"]] += r["n"]
        per_batch[r["batch_id"]] = r["n"]
    return dict(per_tenant), per_batch


def test_concurrent_claims_never_duplicate_nor_exceed_caps(db_url: str, conn: Conn) -> None:
    """Four claimers at once over three tenants never hand out an entry twice or pass a cap."""
    api = SqlApi(conn)
    caps = {api.create_tenant(f"t{i}", cap): cap for i, cap in enumerate((4, 6, 3))}
    wave: dict[UUID, int] = {}
    for n, tenant in enumerate(caps):
        for j, size in enumerate((2, 5)):
            bid = api.create_batch(tenant, phones(12, start=100 * j), {"wave_size": size})
            wave[bid] = size
        assert n < 3
    total = 12 * len(wave)

    workers = [connect(db_url) for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    claimed: list[Claim] = []
    lock = threading.Lock()
    history: list[tuple[dict[UUID, int], dict[UUID, int]]] = []
    rng = random.Random(7)
    try:
        for _round in range(40):

            def claim(i: int) -> None:
                w = SqlApi(workers[i])
                barrier.wait()
                for _ in range(2):
                    got = w.claim(f"w{i}", limit=3)
                    for c in got:
                        w.mark_dispatched(c.entry_id, c.room_name)
                    with lock:
                        claimed.extend(got)

            run_threads(len(workers), claim)
            per_tenant, per_batch = in_flight(conn)
            history.append((per_tenant, per_batch))
            for tenant, n in per_tenant.items():
                assert n <= caps[tenant], (
                    f"round {_round}: tenant {tenant} has {n} > cap {caps[tenant]}"
                )
            for batch, n in per_batch.items():
                assert n <= wave[batch], (
                    f"round {_round}: batch {batch} has {n} > wave {wave[batch]}"
                )
            assert_invariants(conn)
            live = live_calls(conn)
            if not live and len(claimed) == total:
                break
            for call in rng.sample(live, k=max(1, len(live) // 2)):
                api.finish_call(call, rng.choice(["ended", "busy", "failed"]))
    finally:
        for w in workers:
            w.close()

    ids = [c.entry_id for c in claimed]
    assert len(ids) == len(set(ids)), "an entry was handed out twice"
    assert len(ids) == total, f"only {len(ids)} of {total} entries were ever claimed"
    # The caps were actually reached at some point, so the checks above were not vacuous.
    assert any(pt.get(t, 0) == cap for pt, _ in history for t, cap in caps.items())
    assert all(sum(pt.values()) > 0 for pt, _ in history[:3])
    for call in live_calls(conn):
        api.finish_call(call)
    statuses = conn.execute("select status::text as s from batchctl.batches").fetchall()
    assert {r["s"] for r in statuses} == {"completed"}
    assert_invariants(conn)


@pytest.mark.parametrize("n", [8, 12])
def test_concurrent_final_reports_complete_batch_exactly_once(
    db_url: str, conn: Conn, n: int
) -> None:
    """N final 'ended' reports committing at once complete their batch exactly once."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", n)
    workers = [connect(db_url) for _ in range(n)]
    try:
        for rep in range(3):
            batch = api.create_batch(
                tenant,
                phones(n, start=1000 * rep),
                {"wave_size": n, "report_to": ["ops@example.com"]},
            )
            calls = api.dispatch_all(limit=n)
            assert len(calls) == n
            for c in calls:
                api.report(c, "ringing")
                api.report(c, "ongoing")
            barrier = threading.Barrier(n)

            def finish(
                i: int, calls: list[UUID] = calls, barrier: threading.Barrier = barrier
            ) -> str:
                w = SqlApi(workers[i])
                barrier.wait()
                return w.report(calls[i], "ended")

            assert run_threads(n, finish) == ["completed"] * n
            b = one_row(
                conn,
                "select status::text as status, finished_at from batchctl.batches where id = %s",
                (batch,),
            )
            assert b["status"] == "completed" and b["finished_at"] is not None
            events = one_row(
                conn,
                """select count(*) as n from batchctl.events
                    where object = 'batch' and object_id = %s and to_status = 'completed'""",
                (batch,),
            )
            assert events["n"] == 1
            reports = one_row(
                conn,
                "select count(*) as n, min(status::text) as s from batchctl.reports"
                " where batch_id = %s",
                (batch,),
            )
            assert reports["n"] == 1 and reports["s"] == "pending"
            st = api.batch_status(tenant, batch)
            assert st["completed"] == n and st["pending"] == 0
    finally:
        for w in workers:
            w.close()
    assert_invariants(conn)


def test_cancel_races_claims_reports_and_sweeps_without_deadlock(db_url: str, conn: Conn) -> None:
    """cancel_batch, claims, reports and sweeps racing never deadlock (40P01); invariants hold."""
    api = SqlApi(conn)
    tenants = [api.create_tenant(f"t{i}", 5) for i in range(2)]
    batches: list[tuple[UUID, UUID]] = []
    for t in tenants:
        for j in range(3):
            opts = {"wave_size": 3, "pickup_timeout_s": 1, "max_retries": 1}
            batches.append((t, api.create_batch(t, phones(15, start=100 * j), opts)))
    stop = threading.Event()
    errors: list[tuple[str, str | None, str]] = []
    elock = threading.Lock()

    def record(op: str, exc: psycopg.Error) -> None:
        with elock:
            errors.append((op, exc.sqlstate, str(exc)))

    def claimer(i: int) -> None:
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                try:
                    got = w.claim(f"c{i}", limit=4, lease_seconds=1)
                except psycopg.Error as exc:
                    record("claim", exc)
                    continue
                for cl in got:
                    if random.random() < 0.15:
                        continue  # a crashed daemon: the lease expires, sweep re-queues it
                    try:
                        w.mark_dispatched(cl.entry_id, cl.room_name)
                    except psycopg.Error as exc:
                        record("mark_dispatched", exc)
                time.sleep(0.005)

    def reporter(i: int) -> None:
        rng = random.Random(i)
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                rows = c.execute(
                    "select id, status::text as s from batchctl.call_logs"
                    " where status in ('in_queue', 'ringing', 'ongoing')"
                ).fetchall()
                for r in rng.sample(rows, k=min(len(rows), 5)):
                    nxt = {"in_queue": "ringing", "ringing": "ongoing", "ongoing": "ended"}[r["s"]]
                    if rng.random() < 0.3:
                        nxt = rng.choice(["busy", "no_answer", "failed", "ended"])
                    try:
                        w.report(r["id"], nxt)
                    except psycopg.Error as exc:
                        record("report", exc)
                time.sleep(0.003)

    def canceller(_: int) -> None:
        order = list(batches)
        random.Random(3).shuffle(order)
        with connect(db_url) as c:
            w = SqlApi(c)
            for tenant, batch in order[:4]:
                time.sleep(0.15)
                try:
                    w.cancel_batch(tenant, batch, "race test")
                except psycopg.Error as exc:
                    record("cancel", exc)

    def sweeper(_: int) -> None:
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                try:
                    w.sweep()
                except psycopg.Error as exc:
                    record("sweep", exc)
                time.sleep(0.02)

    def hanger(_: int) -> None:
        """The daemon's hang-up loop: delete the queued rooms, acknowledge each."""
        with connect(db_url) as c:
            w = SqlApi(c)
            while not stop.is_set():
                try:
                    for h in w.claim_hangups("hanger"):
                        w.hangup_done(h["room_name"])
                except psycopg.Error as exc:
                    record("hangup", exc)
                time.sleep(0.002)

    roles: list[Callable[[int], None]] = [
        claimer, claimer, reporter, reporter, canceller, sweeper, hanger
    ]  # fmt: skip

    def run(i: int) -> None:
        if roles[i] is canceller:
            try:
                canceller(i)
            finally:
                time.sleep(1.0)
                stop.set()
        else:
            roles[i](i)

    run_threads(len(roles), run)

    deadlocks = [e for e in errors if e[1] == "40P01"]
    assert not deadlocks, f"deadlocks: {deadlocks[:3]}"
    unexpected = [
        e
        for e in errors
        if not (e[0] == "mark_dispatched" and e[1] == "BC004")
        and not (e[0] == "cancel" and e[1] == "BC003")
    ]
    assert not unexpected, f"unexpected errors: {unexpected[:5]}"
    assert_invariants(conn)

    # Drain: end every live call, let the sweep re-queue abandoned claims, dispatch the rest.
    for _ in range(50):
        for call in live_calls(conn):
            api.finish_call(call)
        api.sweep(datetime.now().astimezone() + timedelta(minutes=5))
        for call in api.dispatch_all(limit=50):
            api.finish_call(call)
        if not conn.execute("select 1 from batchctl.batches where finished_at is null").fetchone():
            break
    rows = conn.execute(
        "select id, status::text as s, finished_at from batchctl.batches"
    ).fetchall()
    assert all(r["finished_at"] is not None for r in rows), rows
    cancelled = {r["id"] for r in rows if r["s"] == "cancelled"}
    assert len(cancelled) >= 1
    assert one_row(conn, "select count(*) as n from batchctl.reports")["n"] == len(batches)
    assert_invariants(conn)


def _stuck_work(api: SqlApi, tenant: UUID, start: int) -> dict[str, int]:
    """A batch with calls in every live state and claims never acknowledged; returns what a
    sweep two hours later must do."""
    batch = api.create_batch(tenant, phones(10, start=start), {"wave_size": 10})
    claims = api.claim(limit=10)
    assert {c.batch_id for c in claims} == {batch} and len(claims) == 10
    calls = [api.mark_dispatched(c.entry_id, c.room_name) for c in claims[:8]]
    for c in calls[2:5]:
        api.report(c, "ringing")
    for c in calls[5:8]:
        api.report(c, "ringing")
        api.report(c, "ongoing")
    return {"leases_expired": 2, "pickup_requeued": 2, "ringing_timeouts": 3, "ongoing_timeouts": 3}


def test_two_sweeps_at_once_never_double_count(db_url: str, conn: Conn) -> None:
    """Two sweeps at once: one is skipped or both work consistently; every action counted once."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 100)
    workers = [connect(db_url) for _ in range(2)]
    later = one_row(conn, "select now() + interval '2 hours' as t")["t"]
    try:
        for rep in range(4):
            expected = _stuck_work(api, tenant, 100 * rep)
            barrier = threading.Barrier(2)

            def sweep(i: int, barrier: threading.Barrier = barrier) -> dict[str, Any]:
                w = SqlApi(workers[i])
                barrier.wait()
                return w.sweep(later)

            results = run_threads(2, sweep)
            done = [r for r in results if not r.get("skipped")]
            assert done, results
            for key, n in expected.items():
                assert sum(r[key] for r in done) == n, (key, results)
            assert_invariants(conn)
            assert api.sweep(later)["ringing_timeouts"] == 0  # nothing left to do twice
            # Finish the round: re-queued entries are dispatched and end.
            for call in api.dispatch_all(limit=10):
                api.finish_call(call)
    finally:
        for w in workers:
            w.close()
    failed = one_row(
        conn, "select sum(failed_count) as f, sum(completed_count) as c from batchctl.batches"
    )
    assert failed["f"] == 4 * 6 and failed["c"] == 4 * 4
    assert_invariants(conn)


def test_sweep_while_another_holds_it_is_skipped(db_url: str, conn: Conn) -> None:
    """A sweep running in an open transaction makes a concurrent one return skipped at once."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 10)
    _stuck_work(api, tenant, 0)
    later = one_row(conn, "select now() + interval '2 hours' as t")["t"]
    with connect(db_url) as holder, connect(db_url) as other:
        with holder.transaction():
            first = SqlApi(holder).sweep(later)
            assert first["ringing_timeouts"] == 3
            t0 = time.monotonic()
            assert SqlApi(other).sweep(later) == {"skipped": True}
            assert time.monotonic() - t0 < 2
        second = SqlApi(other).sweep(later)
        assert second["ringing_timeouts"] == 0 and second["ongoing_timeouts"] == 0
    assert_invariants(conn)


def _locked_waiting(conn: psycopg.Connection[Any], pid: int) -> bool:
    row = conn.execute(
        "select wait_event_type from pg_stat_activity where pid = %s", (pid,)
    ).fetchone()
    return row is not None and row["wait_event_type"] == "Lock"


def test_a_sweep_waiting_for_a_held_batch_holds_no_other(db_url: str, conn: Conn) -> None:
    """The interleaving that deadlocked: a caller holds the lower of two batches; the sweep,
    with work in both (an expired lease in the higher, a call stuck ringing in the lower),
    waits for it; the caller then takes the higher batch. The sweep must be waiting while
    holding nothing, so the caller gets the higher batch at once and both finish (before, the
    sweep had locked the higher batch in its first step: 40P01 every time)."""
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 10)
    low, high = sorted(
        api.create_batch(tenant, phones(1, 10 * i), {"autostart": False}) for i in range(2)
    )
    api.start_batch(tenant, low)
    [ringing] = api.dispatch_all()
    api.report(ringing, "ringing")
    api.start_batch(tenant, high)
    assert len(api.claim()) == 1  # its lease runs out below
    later = datetime.now().astimezone() + timedelta(hours=2)

    with connect(db_url) as holder, connect(db_url) as sweeper:
        sweeper_pid = sweeper.info.backend_pid
        holder.execute("set lock_timeout = '5s'")
        with holder.transaction():
            holder.execute("select 1 from batchctl.batches where id = %s for no key update", (low,))
            result: dict[str, Any] = {}

            def sweep() -> None:
                try:
                    result.update(SqlApi(sweeper).sweep(later))
                except psycopg.Error as exc:
                    result["error"] = exc

            thread = threading.Thread(target=sweep, daemon=True)
            thread.start()
            deadline = time.monotonic() + 10
            while not _locked_waiting(conn, sweeper_pid):
                assert time.monotonic() < deadline, "the sweep never waited for the held batch"
                time.sleep(0.01)
            # A deadlock would abort this statement or the sweep after deadlock_timeout.
            holder.execute(
                "select 1 from batchctl.batches where id = %s for no key update", (high,)
            )
        thread.join(10)
        assert not thread.is_alive(), "the sweep did not finish"
    assert "error" not in result, result
    assert (result["leases_expired"], result["ringing_timeouts"]) == (1, 1), result
    assert_invariants(conn)

"""Retention: batchctl.prune() and `batchctl prune`. Old batches with a settled report go with
everything that is theirs, and nothing else changes (every row compared); a big batch pruned a
few rows at a time keeps the invariants after every call; events stay append-only outside
prune; bad arguments and other roles change nothing; prunes run alongside each other and the
daemon's traffic without waiting, deadlocking or counting a row twice.

"Old" is relative to prune's p_now: a test prunes as of 90 days after its newest finished batch,
so every batch that finished before it counts as older than 90 days. The CLI has no p_now, so
its tests move a batch's finished_at back (as the owner, triggers off: a finished batch never
changes otherwise)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import click
import psycopg
import pytest

from batchctl.cli.prune import Duration
from checks import REPORT_TO, all_rows, rejected
from clitools import invoke, run_batchctl
from concurrent_calls import connect, run_threads
from invariants import assert_invariants
from polling import wait_until
from sqlapi import SqlApi, phones

Conn = psycopg.Connection[dict[str, Any]]

# prune()'s counts and the tables they count.
COUNTED = {
    "batches": "batches",
    "reports": "reports",
    "entries": "batch_entries",
    "call_logs": "call_logs",
    "events": "events",
}
RETENTION = timedelta(days=90)


def prune(
    conn: Conn, now: datetime | None, limit: int | None = 10_000, older_than: Any = RETENTION
) -> dict[str, Any]:
    row = conn.execute(
        "select batchctl.prune(%s, %s, %s) as r", (older_than, limit, now)
    ).fetchone()
    assert row is not None
    return row["r"]


def deleted(result: dict[str, Any]) -> int:
    return sum(result[key] for key in COUNTED)


def pruning_as_of(conn: Conn, batch_id: UUID) -> datetime:
    """A p_now at which every batch that finished before batch_id is older than RETENTION, and
    batch_id itself not (the cut-off is its finished_at, and only older ones go)."""
    row = conn.execute(
        "select finished_at from batchctl.batches where id = %s", (batch_id,)
    ).fetchone()
    assert row is not None and row["finished_at"] is not None
    return row["finished_at"] + RETENTION


def run_to_the_end(api: SqlApi, outcomes: tuple[str, ...] = ("ended",)) -> None:
    """Dials and ends every claimable call, as the daemon and the voice worker would."""
    n = 0
    while calls := api.dispatch_all():
        for call in calls:
            api.finish_call(call, outcomes[n % len(outcomes)])
            n += 1


def finished_batch(api: SqlApi, tenant: UUID, n: int, start: int, **options: Any) -> UUID:
    batch = api.create_batch(tenant, phones(n, start), {"wave_size": 50, **options})
    run_to_the_end(api)
    assert api.batch_status(tenant, batch)["finished_at"] is not None
    return batch


def report_status(conn: Conn, batch_id: UUID) -> str:
    row = conn.execute(
        "select status::text as s from batchctl.reports where batch_id = %s", (batch_id,)
    ).fetchone()
    assert row is not None
    return row["s"]


def owner_of(table: str, row: str) -> str:
    doc = json.loads(row)
    return str(doc.get("id" if table == "batches" else "batch_id"))


def without(rows: dict[str, list[str]], batch_ids: set[UUID]) -> dict[str, list[str]]:
    """The rows of every table but those of the given batches."""
    ids = {str(b) for b in batch_ids}
    return {t: [r for r in rs if owner_of(t, r) not in ids] for t, rs in rows.items()}


def backdate(conn: Conn, batch_id: UUID, by: timedelta) -> None:
    """Moves a finished batch's finished_at back. The triggers refuse any change to a finished
    batch, so the owner switches them off for this one UPDATE."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            "update batchctl.batches set finished_at = finished_at - %s where id = %s",
            (by, batch_id),
        )


# --- what goes and what stays ------------------------------------------------------------------


def test_old_batches_with_a_settled_report_go_with_all_theirs_and_nothing_else(
    conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 10)
    api.add_dnc(tenant, "+14155559999")

    # Cancelled with a live call: its hang-up row goes with it. Report skipped (no report_to).
    cancelled = api.create_batch(tenant, phones(3, 0), {"wave_size": 2})
    first, _live = api.dispatch_all()
    api.finish_call(first)
    api.cancel_batch(tenant, cancelled, "withdrawn")
    (hangup,) = api.claim_hangups()
    api.hangup_done(hangup["room_name"])
    assert report_status(conn, cancelled) == "skipped"

    sent = finished_batch(api, tenant, 2, 10, report_delay_s=0, **REPORT_TO)
    claimed = api.claim_report()
    assert claimed is not None and claimed["batch_id"] == sent
    api.report_sent(sent)

    failed = finished_batch(api, tenant, 1, 20, report_delay_s=0, **REPORT_TO)
    for _ in range(5):
        conn.execute("select * from batchctl.claim_report_now(%s, 'me')", (failed,))
        api.report_failed(failed, "mailbox full")
    assert report_status(conn, failed) == "failed"

    # Old too, but their reports are not settled: they stay.
    pending = finished_batch(api, tenant, 1, 30, report_delay_s=3600, **REPORT_TO)
    sending = finished_batch(api, tenant, 1, 40, report_delay_s=0, **REPORT_TO)
    claimed = api.claim_report()
    assert claimed is not None and claimed["batch_id"] == sending

    recent = finished_batch(api, tenant, 2, 50)
    unfinished = api.create_batch(tenant, phones(2, 60), {"wave_size": 50})
    assert len(api.dispatch_all()) == 2
    assert api.batch_status(tenant, unfinished)["finished_at"] is None

    before = all_rows(conn)
    result = prune(conn, pruning_as_of(conn, recent))

    after = all_rows(conn)
    gone = {cancelled, sent, failed}
    assert after == without(before, gone)
    for key, table in COUNTED.items():
        assert result[key] == len(before[table]) - len(after[table]), (key, result)
    assert result["batches"] == 3 and result["entries"] == 3 + 2 + 1
    assert len(before["hangups"]) == 1 and after["hangups"] == []
    assert result["more"] is False
    assert {report_status(conn, b) for b in (pending, sending)} == {"pending", "sending"}
    # Nothing is left to do as of then, and a later prune finds nothing younger.
    assert deleted(prune(conn, pruning_as_of(conn, recent))) == 0
    assert deleted(prune(conn, datetime.now(UTC))) == 0


def test_a_big_batch_pruned_a_few_rows_at_a_time_keeps_the_invariants(
    conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 50)
    big = api.create_batch(
        tenant,
        phones(30),
        {"wave_size": 50, "retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 0},
    )
    run_to_the_end(api, ("ended", "busy", "failed", "no_answer"))
    retried = conn.execute(
        "select count(*) as n from batchctl.call_logs where batch_id = %s and attempt = 2", (big,)
    ).fetchone()
    assert retried is not None and retried["n"] > 0, "no entry has two call logs"
    recent = finished_batch(api, tenant, 2, 100)
    now = pruning_as_of(conn, recent)
    before = all_rows(conn)

    limit = 20
    totals = dict.fromkeys(COUNTED, 0)
    calls = 0
    more = True
    last_total = 30
    while more:
        result = prune(conn, now, limit)
        calls += 1
        assert 0 < deleted(result) <= limit, result
        assert_invariants(conn)
        for key in COUNTED:
            totals[key] += result[key]
        more = result["more"]
        if more:
            # Still there, still completed, its counters following its entries down.
            status = api.batch_status(tenant, big)
            assert status["status"] == "completed" and status["pending"] == 0
            assert status["total"] < last_total or result["entries"] == 0
            last_total = status["total"]
            assert report_status(conn, big) == "skipped"
    assert calls > 10
    assert result["batches"] == 1
    after = all_rows(conn)
    assert after == without(before, {big})
    for key, table in COUNTED.items():
        assert totals[key] == len(before[table]) - len(after[table]), key


def test_a_limit_smaller_than_an_entry_still_takes_one_entry_per_call(
    conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 10)
    old = finished_batch(api, tenant, 3, 0)
    recent = finished_batch(api, tenant, 1, 10)
    now = pruning_as_of(conn, recent)
    results = [prune(conn, now, 1) for _ in range(4)]
    assert [(r["entries"], r["batches"], r["more"]) for r in results] == [
        (1, 0, True),
        (1, 0, True),
        (1, 0, True),
        (0, 1, False),
    ]
    # One entry, its call and the events of both: 3 entry moves, the call's 4 statuses.
    assert [r["events"] for r in results[:3]] == [7, 7, 7]
    assert conn.execute("select 1 from batchctl.batches where id = %s", (old,)).fetchone() is None


# --- the guards stay -------------------------------------------------------------------------


def test_events_entries_and_finished_batches_stay_untouchable_outside_prune(
    conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 10)
    done = finished_batch(api, tenant, 2, 0)
    refused = [
        ("update batchctl.events set reason = 'rewritten'", "append-only: UPDATE"),
        ("delete from batchctl.events", "append-only: DELETE"),
        ("truncate batchctl.events", "append-only: TRUNCATE"),
        ("delete from batchctl.batch_entries", "only with their batch or by prune()"),
        ("update batchctl.batches set total = total - 1, completed_count = completed_count - 1",
         "cannot change"),
    ]  # fmt: skip
    for statement, message in refused:
        rejected(conn, "BC003", partial(conn.execute, statement), message)

    # The setting prune() runs under is on only during the call, even in the caller's
    # transaction; and even set by hand it lets nothing but a DELETE through.
    with conn.transaction():
        prune(conn, pruning_as_of(conn, done))
        with pytest.raises(psycopg.Error) as exc, conn.transaction():
            conn.execute("delete from batchctl.events")
        assert exc.value.sqlstate == "BC003"
    with conn.transaction():
        conn.execute("set local batchctl.pruning = on")
        for statement in ("update batchctl.events set reason = 'x'", "truncate batchctl.events"):
            with pytest.raises(psycopg.Error) as exc, conn.transaction():
                conn.execute(statement)
            assert exc.value.sqlstate == "BC003"


BAD_ARGUMENTS = [
    ("zero age", {"older_than": timedelta(0)}, "p_older_than: expected a positive interval"),
    ("negative age", {"older_than": timedelta(days=-1)}, "p_older_than"),
    ("null age", {"older_than": None}, "p_older_than"),
    ("age out of range", {"older_than": "300000 years"}, "out of range"),
    ("zero limit", {"limit": 0}, "p_limit: expected at least 1, got 0"),
    ("negative limit", {"limit": -5}, "p_limit"),
    ("null limit", {"limit": None}, "p_limit"),
]


@pytest.mark.parametrize(
    ("name", "args", "message"), BAD_ARGUMENTS, ids=[a[0] for a in BAD_ARGUMENTS]
)
def test_bad_arguments_raise_bc001_and_change_nothing(
    conn: Conn, api: SqlApi, name: str, args: dict[str, Any], message: str
) -> None:
    tenant = api.create_tenant("acme", 10)
    finished_batch(api, tenant, 2, 0)
    recent = finished_batch(api, tenant, 1, 10)
    now = pruning_as_of(conn, recent)  # the first batch is old: a working prune would delete it
    rejected(conn, "BC001", lambda: prune(conn, now, **args), message)
    rejected(conn, "BC001", lambda: prune(conn, None), "p_now must not be null")


@pytest.mark.parametrize("role", ["batchctl_worker", "batchctl_tenant"])
def test_only_the_owner_may_prune(conn: Conn, api: SqlApi, role: str) -> None:
    tenant = api.create_tenant("acme", 10)
    finished_batch(api, tenant, 2, 0)
    recent = finished_batch(api, tenant, 1, 10)
    now = pruning_as_of(conn, recent)
    before = all_rows(conn)
    conn.execute(f"set role {role}")
    conn.execute("select set_config('batchctl.tenant_id', %s, false)", (str(tenant),))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        prune(conn, now)
    conn.execute("reset role")
    conn.execute("reset batchctl.tenant_id")
    assert all_rows(conn) == before


# --- concurrency -----------------------------------------------------------------------------


def test_a_batch_or_report_held_by_someone_is_left_for_later_not_waited_for(
    db_url: str, conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 10)
    held_batch = finished_batch(api, tenant, 2, 0)
    held_report = finished_batch(api, tenant, 2, 10)
    free = finished_batch(api, tenant, 2, 20)
    recent = finished_batch(api, tenant, 1, 30)
    now = pruning_as_of(conn, recent)
    conn.execute("set lock_timeout = '5s'")  # a prune that waited would fail, not hang
    with connect(db_url) as holder:
        with holder.transaction():
            # What hangup_done and claim_report_now hold while they work.
            holder.execute(
                "select 1 from batchctl.batches where id = %s for no key update", (held_batch,)
            )
            holder.execute(
                "select 1 from batchctl.reports where batch_id = %s for update", (held_report,)
            )
            t0 = time.monotonic()
            result = prune(conn, now)
            assert time.monotonic() - t0 < 2
            assert (result["batches"], result["entries"], result["more"]) == (1, 2, True)
            left = conn.execute("select id from batchctl.batches order by created_at").fetchall()
            assert [r["id"] for r in left] == [held_batch, held_report, recent]
        result = prune(conn, now)
    assert (result["batches"], result["entries"], result["more"]) == (2, 4, False)
    assert free not in [r["id"] for r in conn.execute("select id from batchctl.batches")]


def test_two_prunes_at_once_both_finish_and_delete_each_row_once(
    db_url: str, conn: Conn, api: SqlApi
) -> None:
    tenant = api.create_tenant("acme", 50)
    old = {finished_batch(api, tenant, 8, 10 * i) for i in range(5)}
    recent = finished_batch(api, tenant, 1, 100)
    now = pruning_as_of(conn, recent)
    before = all_rows(conn)
    workers = [connect(db_url) for _ in range(2)]
    results: list[list[dict[str, Any]]] = [[], []]

    def prune_until_done(i: int) -> None:
        while True:
            results[i].append(prune(workers[i], now, 25))
            if not results[i][-1]["more"]:
                return

    try:
        with connect(db_url) as holder:
            # Both start while prune's lock is held, so they surely run at the same time.
            holder.execute("select pg_advisory_lock(hashtext('batchctl.prune'))")
            threads = [threading.Thread(target=prune_until_done, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()

            def both_waiting() -> bool:
                row = holder.execute(
                    """select count(*) as n from pg_locks
                        where locktype = 'advisory' and not granted
                          and database = (select oid from pg_database
                                           where datname = current_database())"""
                ).fetchone()
                return row is not None and row["n"] == 2

            wait_until(both_waiting, timeout=30, what="both prunes to wait for the lock")
            holder.execute("select pg_advisory_unlock(hashtext('batchctl.prune'))")
            for t in threads:
                t.join(60)
                assert not t.is_alive(), "a prune hung"
    finally:
        for w in workers:
            w.close()
    assert all(len(r) > 0 for r in results)
    after = all_rows(conn)
    assert after == without(before, old)
    for key, table in COUNTED.items():
        total = sum(r[key] for rs in results for r in rs)
        assert total == len(before[table]) - len(after[table]), key


def test_prune_runs_alongside_the_daemons_work(db_url: str, conn: Conn, api: SqlApi) -> None:
    tenant = api.create_tenant("acme", 50)
    old = {finished_batch(api, tenant, 10, 20 * i) for i in range(3)}
    recent = finished_batch(api, tenant, 1, 100)
    now = pruning_as_of(conn, recent)
    live = api.create_batch(tenant, phones(40, 200), {"wave_size": 5})
    pruner, daemon = connect(db_url), connect(db_url)

    def work(i: int) -> None:
        if i == 0:
            while prune(pruner, now, 15)["more"]:
                pass
        else:
            run_to_the_end(SqlApi(daemon), ("ended", "busy"))

    try:
        run_threads(2, work)
    finally:
        pruner.close()
        daemon.close()
    assert api.batch_status(tenant, live)["status"] == "completed"
    left = {r["id"] for r in conn.execute("select id from batchctl.batches")}
    assert left == {recent, live}
    assert not old & left


# --- the command line ------------------------------------------------------------------------


def old_and_recent(conn: Conn, api: SqlApi) -> tuple[UUID, UUID]:
    tenant = api.create_tenant("acme", 10)
    old = finished_batch(api, tenant, 5, 0)
    recent = finished_batch(api, tenant, 1, 10)
    backdate(conn, old, timedelta(days=100))
    return old, recent


def test_cli_prunes_in_bounded_transactions_until_done(
    db_url: str, conn: Conn, api: SqlApi
) -> None:
    old, _ = old_and_recent(conn, api)
    before = all_rows(conn)
    result = invoke(db_url, "prune", "--older-than", "90d", "--limit", "20", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    after = all_rows(conn)
    assert after == without(before, {old})
    assert doc["deleted"] == {
        key: len(before[table]) - len(after[table]) for key, table in COUNTED.items()
    }
    assert doc["deleted"]["batches"] == 1 and doc["more"] is False
    # An entry is 9 rows (itself, a call, 3 + 4 events), the batch 5 (itself, its report, 3
    # events): two entries per call of 20 rows, the batch with the last one.
    assert doc["calls"] == 3

    again = invoke(db_url, "prune", "--older-than", "90d")
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()
    assert lines[0].split() == ["TABLE", "DELETED"]
    assert [line.split() for line in lines[1:]] == [[key, "0"] for key in COUNTED]
    assert all_rows(conn) == after


def test_cli_as_a_subprocess_prints_what_it_deleted(db_url: str, conn: Conn, api: SqlApi) -> None:
    old_and_recent(conn, api)
    done = run_batchctl(db_url, "prune", "--older-than", "2160h")  # 90 days
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:]}
    assert (rows["batches"], rows["entries"], rows["call_logs"]) == ("1", "5", "5")


def test_cli_says_when_what_is_left_is_held_by_others(db_url: str, conn: Conn, api: SqlApi) -> None:
    old, _ = old_and_recent(conn, api)
    with connect(db_url) as holder, holder.transaction():
        holder.execute("select 1 from batchctl.batches where id = %s for no key update", (old,))
        result = invoke(db_url, "prune", "--older-than", "90d")
    assert result.exit_code == 0, result.output
    assert "more is left, held by others right now" in result.stdout
    doc = json.loads(invoke(db_url, "prune", "--older-than", "90d", "--json").stdout)
    assert doc["deleted"]["batches"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert Duration().convert(text, None, None) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90", "expected a whole number and a unit: 90d, 12h, 30m or 45s"),
        ("90x", "is not a duration"),
        ("d", "is not a duration"),
        ("1.5d", "is not a duration"),
        ("-1d", "is not a duration"),
        ("0d", "is not longer than 0"),
        ("99999999999d", "is too long"),
    ],
)
def test_cli_refuses_bad_durations_naming_the_option(db_url: str, text: str, message: str) -> None:
    result = invoke(db_url, "prune", "--older-than", text)
    assert result.exit_code == 2, result.output
    assert "'--older-than'" in result.stderr and message in result.stderr, result.stderr
    with pytest.raises(click.BadParameter):
        Duration().convert(text, None, None)


def test_cli_usage_errors(db_url: str) -> None:
    missing = invoke(db_url, "prune")
    assert missing.exit_code == 2 and "--older-than" in missing.stderr
    zero = invoke(db_url, "prune", "--older-than", "90d", "--limit", "0")
    assert zero.exit_code == 2 and "'--limit'" in zero.stderr

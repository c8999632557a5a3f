"""The seed documents' bugs (shared/seeds/), one named test each, showing why each is
impossible in batchctl. `pytest tests/seeds/ -v` reads as the list:

- test_seeds.py: seed 000 (an audit of an earlier Postgres + LiveKit batch-call system), bugs 1
  to 6 (the helpers they share are in tests/helpers/checks.py);
- test_seeds_000_bugs_07_12.py: seed 000, bugs 7 to 12;
- test_seeds_001_002_003.py: seeds 001 and 002 (fix notes) and 003 (the reference design).

Every test drives the SQL API as the daemon, the voice worker and cron do
(tests/helpers/sqlapi.py) and asserts the concrete outcome: statuses, counters, batch_status()
fields, events, SQLSTATEs, and rows unchanged after a rejected call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import pytest

from checks import (
    REPORT_TO,
    all_rows,
    call_status,
    counts,
    entries_of,
    enum_values,
    later,
    real_counts,
    rejected,
    report_rows,
    tally,
)
from concurrent_calls import connect, run_threads
from sqlapi import ENTRY_FOR_CALL, SqlApi, live_calls, phones

SWEEP_KEYS = (
    "leases_expired",
    "pickup_requeued",
    "pickup_failed",
    "pickup_timeouts",
    "ringing_timeouts",
    "ongoing_timeouts",
    "expired",
    "deferred_to_window",
    "held_by_rules",
    "reports_released",
)


# --- bug 1: the timeout handler ------------------------------------------------------------------


@dataclass(frozen=True)
class Stuck:
    """One kind of work the sweep must clear up, and what it must leave behind."""

    stage: str  # how far the work got: claimed, in_queue, ringing, ongoing, report_sending, ...
    counts: dict[str, int]  # the sweep's counters for it; every other counter stays 0
    entry: tuple[str, str | None]  # the entry's status and last_error after the sweep
    call: str | None  # the call's status after the sweep (None: no call was made)
    hangup: str | None  # reason of the hang-up queued for the call (None: none)
    options: dict[str, Any] = field(default_factory=dict)


# Ordered so that building them one after another claims only the newest batch's entry: the
# end_at kind leaves its entry queued, so it comes last.
STUCK = {
    "lease": Stuck("claimed", {"leases_expired": 1}, ("queued", "lease_expired"), None, None),
    "pickup_requeued": Stuck(
        "in_queue",
        {"pickup_requeued": 1, "pickup_timeouts": 1},
        ("queued", "pickup_timeout"),
        "failed",
        "pickup_timeout",
    ),
    "pickup_failed": Stuck(
        "in_queue",
        {"pickup_failed": 1, "pickup_timeouts": 1},
        ("failed", "max_retries_exceeded"),
        "failed",
        "pickup_timeout",
        {"max_retries": 0},
    ),
    "ringing": Stuck(
        "ringing",
        {"ringing_timeouts": 1},
        ("failed", "ringing_timeout"),
        "failed",
        "ringing_timeout",
    ),
    "ongoing": Stuck(
        "ongoing",
        {"ongoing_timeouts": 1},
        ("failed", "ongoing_timeout"),
        "failed",
        "ongoing_timeout",
    ),
    "report_lease": Stuck(
        "report_sending",
        {"reports_released": 1},
        ("completed", None),
        "ended",
        None,
        {**REPORT_TO, "report_delay_s": 0},
    ),
    "end_at": Stuck("queued_until_end_at", {"expired": 1}, ("cancelled", "expired"), None, None),
}


def build_stuck(api: SqlApi, tenant: UUID, kind: Stuck, start: int) -> UUID:
    """A one-entry batch whose work stalled at kind.stage; returns the batch id."""
    options = dict(kind.options)
    if kind.stage == "queued_until_end_at":
        options["end_at"] = later(hours=1).isoformat()  # still claimable now, past at the sweep
    batch = api.create_batch(tenant, phones(1, start), options)
    if kind.stage == "queued_until_end_at":
        return batch
    (claim,) = api.claim(limit=1)
    assert claim.batch_id == batch
    if kind.stage == "claimed":
        return batch  # the daemon died before acknowledging
    call = api.mark_dispatched(claim.entry_id, claim.room_name)
    if kind.stage in ("ringing", "ongoing"):
        api.report(call, "ringing")
    if kind.stage == "ongoing":
        api.report(call, "ongoing")
    if kind.stage == "report_sending":
        api.finish_call(call)
        report = api.claim_report("mailer")  # and the mailer died mid-send
        assert report is not None and report["batch_id"] == batch
    return batch


def assert_swept(api: SqlApi, tenant: UUID, batch: UUID, kind: Stuck) -> None:
    (entry,) = entries_of(api.conn, batch)
    assert (entry["status"], entry["last_error"]) == kind.entry
    if kind.call is None:
        assert entry["call_log_id"] is None
    else:
        assert call_status(api.conn, entry["call_log_id"]) == kind.call
    hangups = api.conn.execute(
        "select reason from batchctl.hangups where batch_id = %s", (batch,)
    ).fetchall()
    assert [h["reason"] for h in hangups] == ([kind.hangup] if kind.hangup else [])
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(**{kind.entry[0]: 1})
    done = kind.entry[0] != "queued"
    assert (status["status"], status["finished_at"] is not None) == (
        ("completed", True) if done else ("running", False)
    )
    if kind.stage == "report_sending":
        assert [r["status"] for r in report_rows(api.conn, batch)] == ["pending"]


@pytest.mark.parametrize("name", list(STUCK))
def test_seed000_bug01_each_timeout_step_works_on_its_own(api: SqlApi, name: str) -> None:
    """Seed 000 bug 1: the timeout handler wrote a column that did not exist; its steps shared
    one transaction, so every step was rolled back and stuck entries stayed stuck forever.
    sweep() is one transaction too, so every one of its steps is run here: each on its own does
    its work, records why in last_error, and counts exactly what it did."""
    kind = STUCK[name]
    tenant = api.create_tenant(max_concurrent_calls=10)
    batch = build_stuck(api, tenant, kind, 0)
    assert api.sweep(later(hours=2)) == {k: kind.counts.get(k, 0) for k in SWEEP_KEYS}
    assert_swept(api, tenant, batch, kind)


def test_seed000_bug01_one_sweep_clears_every_kind_of_timeout_at_once(api: SqlApi) -> None:
    """Seed 000 bug 1: one failing step took all the others down with it. A sweep facing every
    kind of stuck work at once handles each, leaves every row and counter right, and a second
    sweep finds nothing left to do."""
    tenant = api.create_tenant(max_concurrent_calls=10)
    batches = {
        name: build_stuck(api, tenant, kind, 10 * i) for i, (name, kind) in enumerate(STUCK.items())
    }
    at = later(hours=2)
    assert api.sweep(at) == {k: sum(s.counts.get(k, 0) for s in STUCK.values()) for k in SWEEP_KEYS}
    for name, batch in batches.items():
        assert_swept(api, tenant, batch, STUCK[name])
    assert api.sweep(at) == dict.fromkeys(SWEEP_KEYS, 0)


# --- bug 2: cancel wrote "stopped" ---------------------------------------------------------------


def test_seed000_bug02_cancel_is_cancelled_everywhere_and_stops_dispatch(api: SqlApi) -> None:
    """Seed 000 bug 2: cancel wrote 'stopped' (not a status) and dispatch went on. Here cancel is
    'cancelled' in the row, batch_status and the events; nothing is claimed after it; 'stopped'
    cannot be written at all; and the batch stays cancelled when its last calls end (the reference
    design's completion check turned a stopped batch into 'completed')."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(6))
    calls = api.dispatch_all()
    assert len(calls) == 2
    assert api.cancel_batch(tenant, batch, "withdrawn") == 4
    status = api.batch_status(tenant, batch)
    assert status["status"] == "cancelled" and status["finished_at"] is None
    assert counts(status) == tally(cancelled=4, dispatched=2)
    last = api.conn.execute(
        """select to_status, reason from batchctl.events where object = 'batch' and object_id = %s
            order by id desc limit 1""",
        (batch,),
    ).fetchone()
    assert last == {"to_status": "cancelled", "reason": "cancel_batch: withdrawn"}
    assert api.claim() == [], "a cancelled batch dispatches nothing more"

    assert "stopped" not in enum_values(api.conn, "batch_status")
    rejected(
        api.conn,
        "22P02",
        lambda: api.conn.execute(
            "update batchctl.batches set status = 'stopped' where id = %s", (batch,)
        ),
        'invalid input value for enum batchctl.batch_status: "stopped"',
    )
    for call in calls:
        api.finish_call(call)
    status = api.batch_status(tenant, batch)
    assert status["status"] == "cancelled" and status["finished_at"] is not None
    assert counts(status) == tally(cancelled=4, completed=2)


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_seed000_bug02_a_finished_batch_is_terminal_for_cancel(api: SqlApi, final: str) -> None:
    """Seed 000 bug 2: the cancel guard listed 'stopped', 'completed', 'cancelled' but forgot
    'failed'. Here every terminal status is terminal for cancel: BC003 naming the status and no
    change, or 0 (nothing to do) for a batch already cancelled."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    if final == "completed":
        api.finish_call(api.dispatch_all()[0])
    elif final == "failed":
        api.fail_batch(tenant, batch, "admin")
    else:
        api.cancel_batch(tenant, batch)
    assert api.batch_status(tenant, batch)["status"] == final
    if final == "cancelled":
        before = all_rows(api.conn)
        assert api.cancel_batch(tenant, batch) == 0
        assert all_rows(api.conn) == before
    else:
        rejected(api.conn, "BC003", lambda: api.cancel_batch(tenant, batch), f"already {final}")


# --- bug 3: cancel with the wrong arguments ------------------------------------------------------


def test_seed000_bug03_cancel_entry_with_a_wrong_id_is_not_found_and_changes_nothing(
    api: SqlApi,
) -> None:
    """Seed 000 bug 3: the entry cancel passed the batch id as the entry id and the index as the
    status, and silently updated nothing. Here every wrong id is BC002 (a wrongly typed argument
    does not even resolve) and changes nothing; the right id cancels exactly that entry."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(3), {"autostart": False})
    entries = entries_of(api.conn, batch)
    target = entries[1]["id"]
    rejected(api.conn, "BC002", lambda: api.cancel_entry(tenant, batch), f"entry {batch} not found")
    unknown = uuid4()
    rejected(api.conn, "BC002", lambda: api.cancel_entry(tenant, unknown), "not found")
    rejected(
        api.conn, "BC002", lambda: api.cancel_entry(batch, target), f"tenant {batch} not found"
    )
    rejected(api.conn, "42883", lambda: api.cancel_entry(tenant, 1), "cancel_entry")  # type: ignore[arg-type]

    assert api.cancel_entry(tenant, target) is True
    after = entries_of(api.conn, batch)
    assert [e for e in after if e["id"] != target] == [e for e in entries if e["id"] != target]
    assert [(e["status"], e["last_error"]) for e in after if e["id"] == target] == [
        ("cancelled", "cancelled")
    ]
    assert counts(api.batch_status(tenant, batch)) == tally(queued=2, cancelled=1)


# --- bug 4: a hard-coded "ended" ----------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "entry_status"), sorted(ENTRY_FOR_CALL.items()))
def test_seed000_bug04_every_call_outcome_reaches_its_entry_status_and_counter(
    api: SqlApi, outcome: str, entry_status: str
) -> None:
    """Seed 000 bug 4: the worker always reported 'ended', and everything but ended/completed was
    mapped to 'failed', so failed and declined calls counted as completed. Here the call keeps
    its real outcome and the entry and its counter follow SPEC §2's mapping, in one call."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    (call,) = api.dispatch_all()
    api.report(call, "ringing")
    assert api.report(call, outcome, {"summary": outcome}) == entry_status
    assert call_status(api.conn, call) == outcome
    (entry,) = entries_of(api.conn, batch)
    assert (entry["status"], entry["outcome"]) == (entry_status, outcome)
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(**{entry_status: 1})
    assert status["status"] == "completed"


def test_seed000_bug04_a_batch_of_every_outcome_counts_each_where_it_belongs(api: SqlApi) -> None:
    """Seed 000 bug 4: the inflated success rate. One batch ending with each of the 11 terminal
    call statuses counts 2 completed, 3 failed, 5 declined and 1 cancelled - not 11 completed."""
    outcomes = sorted(ENTRY_FOR_CALL)
    assert len(outcomes) == 11
    tenant = api.create_tenant(max_concurrent_calls=11)
    batch = api.create_batch(tenant, phones(11))
    calls = api.dispatch_all()
    for call, outcome in zip(calls, outcomes, strict=True):
        api.report(call, outcome)
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(completed=2, failed=3, declined=5, cancelled=1)
    assert counts(status) == real_counts(api.conn, batch)


# --- bug 5: a slot released twice ---------------------------------------------------------------


def test_seed000_bug05_a_call_slot_is_freed_once_however_often_its_end_is_reported(
    db_url: str, api: SqlApi
) -> None:
    """Seed 000 bug 5: the concurrency semaphore was released when the agent's entrypoint
    returned (call still live) and again when the call ended, so the limit drifted away. Here the
    slot is the entry's in-flight status: a live call holds it, and the same end reported twice
    at once (worker clean-up and webhook) frees it once: each round exactly one new claim fits.
    (Many different final reports at once: test_concurrency.py.)"""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(6))

    def dial(limit: int) -> int:
        claims = api.claim(limit=limit)
        for c in claims:
            call = api.mark_dispatched(c.entry_id, c.room_name)
            api.report(call, "ringing")
            api.report(call, "ongoing")  # the agent's entrypoint has returned; the call goes on
        return len(claims)

    assert dial(10) == 2
    assert api.claim() == [], "live calls hold their slots"
    workers = [connect(db_url) for _ in range(2)]
    try:
        while live := live_calls(api.conn, batch):
            call = live[0]
            barrier = threading.Barrier(2)

            def end(i: int, call: UUID = call, barrier: threading.Barrier = barrier) -> str:
                reporter = SqlApi(workers[i])
                barrier.wait()
                return reporter.report(call, "ended")

            assert run_threads(2, end) == ["completed", "completed"]
            events = api.conn.execute(
                """select count(*) filter (where ignored) as ignored,
                          count(*) filter (where not ignored and to_status = 'ended') as ended
                     from batchctl.events where object_id = %s""",
                (call,),
            ).fetchone()
            assert events == {"ignored": 1, "ended": 1}
            queued = api.batch_status(tenant, batch)["queued"]
            assert dial(10) == min(1, queued), "one end frees exactly one slot"
            status = api.batch_status(tenant, batch)
            assert status["running"] + status["dispatched"] <= 2
    finally:
        for w in workers:
            w.close()
    assert counts(api.batch_status(tenant, batch)) == tally(completed=6)


# --- bug 6: sweep failures not counted ----------------------------------------------------------


def test_seed000_bug06_failures_made_by_the_sweep_are_counted(api: SqlApi) -> None:
    """Seed 000 bug 6: entries failed by the timeout handler were never added to failed_calls,
    so completed + failed < total for a finished batch. Here the counters follow every entry
    change whoever makes it: the sweep's three failures are in batch_status at once, with their
    events, and the finished batch adds up to its total."""
    tenant = api.create_tenant(max_concurrent_calls=4)
    batch = api.create_batch(tenant, phones(4), {"max_retries": 0})
    answered, ringing, ongoing, _never_picked_up = api.dispatch_all()
    api.finish_call(answered)
    api.report(ringing, "ringing")
    api.report(ongoing, "ringing")
    api.report(ongoing, "ongoing")
    result = api.sweep(later(hours=2))
    timeouts = [result[k] for k in ("ringing_timeouts", "ongoing_timeouts", "pickup_failed")]
    assert timeouts == [1, 1, 1]
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(completed=1, failed=3)
    assert status["completed"] + status["failed"] == status["total"] == 4
    assert status["status"] == "completed" and status["finished_at"] is not None
    reasons = api.conn.execute(
        """select reason from batchctl.events
            where batch_id = %s and object = 'entry' and to_status = 'failed' order by reason""",
        (batch,),
    ).fetchall()
    assert [r["reason"] for r in reasons] == [
        "sweep: max_retries_exceeded",
        "sweep: ongoing_timeout",
        "sweep: ringing_timeout",
    ]

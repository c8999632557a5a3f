"""Seed 000, bugs 7 to 12: one named test per bug of the audit in shared/seeds/000 (bugs 1 to
6 and the helpers are in tests/seeds/test_seeds.py)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from uuid import UUID

import pytest

from batchctl.statuses import ENTRY_STATUSES
from checks import (
    REPORT_TO,
    Conn,
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
from pgtools import one_row
from sqlapi import ENTRY_FOR_CALL, Claim, SqlApi, phones

# --- bug 7: entry statuses that are call statuses -----------------------------------------------


def assert_not_an_entry_status(conn: Conn, batch: UUID, status: str) -> None:
    assert status not in enum_values(conn, "entry_status")
    rejected(
        conn,
        "22P02",
        lambda: conn.execute(
            "update batchctl.batch_entries set status = %s where batch_id = %s", (status, batch)
        ),
        f'invalid input value for enum batchctl.entry_status: "{status}"',
    )


def test_seed000_bug07_call_statuses_are_not_entry_statuses(api: SqlApi) -> None:
    """Seed 000 bug 7: the timeout handler looked for entries 'ringing' / 'ongoing', statuses only
    calls have, so those steps never matched. Here entry statuses are exactly SPEC §2's seven, and
    writing a call status to an entry is rejected."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    api.dispatch_all()
    assert enum_values(api.conn, "entry_status") == list(ENTRY_STATUSES)
    for status in ("ringing", "ongoing", "ended"):
        assert_not_an_entry_status(api.conn, batch, status)


def test_seed000_bug07_timeouts_act_on_the_calls_status(api: SqlApi) -> None:
    """Seed 000 bug 7: here the ringing and ongoing timeouts look at the call's status and how
    long it has held it, while the entry stays 'dispatched': a call that rang and was then
    answered is not failed as ringing, and fails as ongoing only after ongoing_timeout_s."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2), {"ringing_timeout_s": 60, "ongoing_timeout_s": 600})
    answered, ringing = api.dispatch_all()
    api.report(answered, "ringing")
    api.report(answered, "ongoing")
    api.report(ringing, "ringing")
    assert {e["status"] for e in entries_of(api.conn, batch)} == {"dispatched"}

    result = api.sweep(later(seconds=120))
    assert (result["ringing_timeouts"], result["ongoing_timeouts"]) == (1, 0)
    assert [call_status(api.conn, c) for c in (answered, ringing)] == ["ongoing", "failed"]
    assert [e["status"] for e in entries_of(api.conn, batch)] == ["dispatched", "failed"]

    result = api.sweep(later(seconds=700))
    assert (result["ringing_timeouts"], result["ongoing_timeouts"]) == (0, 1)
    assert [(e["status"], e["last_error"]) for e in entries_of(api.conn, batch)] == [
        ("failed", "ongoing_timeout"),
        ("failed", "ringing_timeout"),
    ]


# --- bug 8: a wave loop blind to cancel ---------------------------------------------------------


def test_seed000_bug08_cancel_takes_effect_at_once_and_the_batch_ends_with_its_calls(
    api: SqlApi,
) -> None:
    """Seed 000 bug 8: the wave loop did not check for cancel, so a cancel waited up to the
    20-minute wave timeout. Here cancel is immediate: queued and claimed entries are cancelled,
    nothing more is claimed, a claim being dialled is refused on acknowledgement (BC004: hang it
    up), live calls and the claim's room get their hang-up queued in the outbox, and the batch
    finishes as the calls end - by the daemon deleting the room (hangup_done) or the call ending
    on its own."""
    tenant = api.create_tenant(max_concurrent_calls=3)
    batch = api.create_batch(tenant, phones(6), REPORT_TO)
    first, second, being_dialled = api.claim(limit=3)
    ringing = api.mark_dispatched(first.entry_id, first.room_name)
    ongoing = api.mark_dispatched(second.entry_id, second.room_name)
    api.report(ringing, "ringing")
    api.report(ongoing, "ongoing")

    assert api.cancel_batch(tenant, batch) == 4
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(cancelled=4, dispatched=2)
    assert status["finished_at"] is None, "two calls are still live"
    assert api.claim() == []
    rejected(
        api.conn,
        "BC004",
        lambda: api.mark_dispatched(being_dialled.entry_id, being_dialled.room_name),
        f"hang up room {being_dialled.room_name}",
    )
    queued = api.claim_hangups()
    assert {(h["room_name"], h["reason"]) for h in queued} == {
        (first.room_name, "batch_cancelled"),
        (second.room_name, "batch_cancelled"),
        (being_dialled.room_name, "batch_cancelled"),  # LiveKit may have its room: no call log
    }
    api.hangup_done(being_dialled.room_name)

    api.hangup_done(first.room_name)  # the daemon deleted the ringing call's room
    assert call_status(api.conn, ringing) == "cancelled"
    assert api.batch_status(tenant, batch)["finished_at"] is None
    assert report_rows(api.conn, batch) == []
    api.report(ongoing, "ended")  # the other call ended before its room was deleted
    api.hangup_done(second.room_name)
    status = api.batch_status(tenant, batch)
    assert status["status"] == "cancelled" and status["finished_at"] is not None
    assert counts(status) == tally(cancelled=5, completed=1)
    assert [r["status"] for r in report_rows(api.conn, batch)] == ["pending"]


# --- bug 9: looking for "pending" entries -------------------------------------------------------


@pytest.mark.parametrize("how", ["created", "lease_expired", "pickup_timeout", "retry_on"])
def test_seed000_bug09_claims_find_queued_entries_however_they_were_queued(
    api: SqlApi, how: str
) -> None:
    """Seed 000 bug 9: the look-up of work filtered on 'pending', a status entries never had,
    and found nothing. Here claims take 'queued' entries, whichever way they became queued:
    created, a claim whose lease expired, a call never picked up, a retried outcome."""
    tenant = api.create_tenant()
    options = {"retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 0}
    batch = api.create_batch(tenant, phones(1), options if how == "retry_on" else {})
    if how != "created":
        (claim,) = api.claim()
        if how == "lease_expired":
            api.sweep(later(minutes=2))
        else:
            call = api.mark_dispatched(claim.entry_id, claim.room_name)
            if how == "pickup_timeout":
                api.sweep(later(hours=1))
            else:
                api.report(call, "busy")
    (entry,) = entries_of(api.conn, batch)
    assert entry["status"] == "queued"
    assert [c.entry_id for c in api.claim()] == [entry["id"]]
    assert counts(api.batch_status(tenant, batch)) == tally(running=1)


def test_seed000_bug09_there_is_no_pending_entry_status(api: SqlApi) -> None:
    """Seed 000 bug 9: entries are created 'queued', and 'pending' cannot be written to one."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2), {"autostart": False})
    assert [e["status"] for e in entries_of(api.conn, batch)] == ["queued", "queued"]
    assert_not_an_entry_status(api.conn, batch, "pending")


# --- bug 10: counting statuses that do not exist ------------------------------------------------


@dataclass
class Walk:
    """A batch of 5 entries (tenant cap 3) taken step by step through its life."""

    api: SqlApi
    tenant: UUID
    batch: UUID
    claims: list[Claim] = field(default_factory=list)
    calls: list[UUID] = field(default_factory=list)


def _start(w: Walk) -> None:
    w.api.start_batch(w.tenant, w.batch)


def _claim(w: Walk) -> None:
    w.claims = w.api.claim(limit=10)


def _acknowledge_two(w: Walk) -> None:
    w.calls = [w.api.mark_dispatched(c.entry_id, c.room_name) for c in w.claims[:2]]


def _calls_progress(w: Walk) -> None:
    w.api.report(w.calls[0], "ringing")
    w.api.report(w.calls[1], "ringing")
    w.api.report(w.calls[1], "ongoing")


def _one_ends(w: Walk) -> None:
    w.api.report(w.calls[1], "ended")


def _lease_expires(w: Walk) -> None:
    w.api.sweep(later(seconds=90))  # past the 60 s lease, before any call timeout


def _one_declines(w: Walk) -> None:
    w.api.report(w.calls[0], "busy")


def _rest_done(w: Walk) -> None:
    for call in w.api.dispatch_all():
        w.api.finish_call(call)


STAGES: list[tuple[str, Callable[[Walk], None], str, dict[str, int]]] = [
    ("created", lambda w: None, "pending", tally(queued=5)),
    ("started", _start, "running", tally(queued=5)),
    ("claimed", _claim, "running", tally(queued=2, running=3)),
    ("dispatched", _acknowledge_two, "running", tally(queued=2, running=1, dispatched=2)),
    ("calls_live", _calls_progress, "running", tally(queued=2, running=1, dispatched=2)),
    ("one_ended", _one_ends, "running", tally(queued=2, running=1, dispatched=1, completed=1)),
    ("lease_expired", _lease_expires, "running", tally(queued=3, dispatched=1, completed=1)),
    ("one_declined", _one_declines, "running", tally(queued=3, completed=1, declined=1)),
    ("all_done", _rest_done, "completed", tally(completed=4, declined=1)),
]


@pytest.mark.parametrize("upto", range(len(STAGES)), ids=[s[0] for s in STAGES])
def test_seed000_bug10_batch_status_counts_every_stage_right(api: SqlApi, upto: int) -> None:
    """Seed 000 bug 10: the status API counted 'pending' and 'running' entries where entries were
    'queued' and 'dispatched', so it always showed 0. Here batch_status counts every entry status
    at every stage of a batch's life, pending = queued + running + dispatched, and agrees with
    the entry rows."""
    tenant = api.create_tenant(max_concurrent_calls=3)
    walk = Walk(api, tenant, api.create_batch(tenant, phones(5), {"autostart": False}))
    for _name, step, _status, _counts in STAGES[: upto + 1]:
        step(walk)
    _name, _step, expected_status, expected = STAGES[upto]
    status = api.batch_status(tenant, walk.batch)
    assert status["status"] == expected_status
    assert counts(status) == expected
    assert real_counts(api.conn, walk.batch) == expected
    assert status["total"] == 5


# --- bug 11: a late callback overwriting a timeout ----------------------------------------------


def test_seed000_bug11_a_late_end_after_a_timeout_changes_nothing(api: SqlApi) -> None:
    """Seed 000 bug 11: the entry update had no terminal guard, so a worker's late 'ended' turned
    an entry the timeout had failed into 'completed' and counted it twice. Here the late report
    changes nothing but an ignored event, and a direct UPDATE of a terminal entry or call - its
    status or any column - is BC003."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {"ringing_timeout_s": 60})
    (call,) = api.dispatch_all()
    api.report(call, "ringing")
    assert api.sweep(later(seconds=120))["ringing_timeouts"] == 1
    (entry,) = entries_of(api.conn, batch)
    assert (entry["status"], entry["last_error"]) == ("failed", "ringing_timeout")

    before = all_rows(api.conn)
    assert api.report(call, "ended", {"summary": "late"}) == "failed"
    after = all_rows(api.conn)
    assert {t: r for t, r in after.items() if t != "events"} == {
        t: r for t, r in before.items() if t != "events"
    }
    ignored = api.conn.execute(
        """select from_status, to_status, ignored from batchctl.events
            where object_id = %s order by id desc limit 1""",
        (call,),
    ).fetchone()
    assert ignored == {"from_status": "failed", "to_status": "ended", "ignored": True}
    assert len(after["events"]) == len(before["events"]) + 1

    entry_id = entry["id"]
    for statement, needle in (
        (
            "update batchctl.batch_entries set status = 'completed' where id = %s",
            "from failed to completed",
        ),
        (
            "update batchctl.batch_entries set last_error = null where id = %s",
            "from failed to failed",
        ),
        (
            "update batchctl.call_logs set status = 'ended' where entry_id = %s",
            "from failed to ended",
        ),
    ):
        rejected(api.conn, "BC003", partial(api.conn.execute, statement, (entry_id,)), needle)
    assert counts(api.batch_status(tenant, batch)) == tally(failed=1)


def test_seed000_bug11_a_late_end_racing_the_sweep_is_counted_once(
    db_url: str, api: SqlApi
) -> None:
    """Seed 000 bug 11, the race itself: the sweep times out ringing calls while their workers
    report 'ended' at the same moment. Whoever commits first wins; the other changes nothing.
    Each entry ends as its call did, is counted once, and completed + failed = total.
    (Two sweeps at once: test_concurrency.py.)"""
    n = 8
    tenant = api.create_tenant(max_concurrent_calls=n)
    batch = api.create_batch(tenant, phones(n), {"ringing_timeout_s": 60})
    calls = api.dispatch_all()
    for call in calls:
        api.report(call, "ringing")
    at = later(seconds=120)
    workers = [connect(db_url) for _ in range(2)]
    barrier = threading.Barrier(2)

    def race(i: int) -> Any:
        actor = SqlApi(workers[i])
        barrier.wait()
        if i == 0:
            return actor.sweep(at)["ringing_timeouts"]
        return [actor.report(call, "ended") for call in calls]

    try:
        timed_out, _ = run_threads(2, race)
    finally:
        for w in workers:
            w.close()
    ends = Counter(call_status(api.conn, call) for call in calls)
    assert set(ends) <= {"ended", "failed"} and ends["failed"] == timed_out
    for entry in entries_of(api.conn, batch):
        assert entry["status"] == ENTRY_FOR_CALL[call_status(api.conn, entry["call_log_id"])]
    status = api.batch_status(tenant, batch)
    assert counts(status) == tally(completed=ends["ended"], failed=ends["failed"])
    ignored = one_row(
        api.conn,
        "select count(*) as n from batchctl.events where ignored and batch_id = %s",
        (batch,),
    )
    assert ignored["n"] == timed_out, "every report that lost the race is recorded as ignored"


# --- bug 12: no completion check after cancel ---------------------------------------------------


STOPS = [
    "cancel_batch",
    "cancel_batch_with_live_calls",
    "cancel_entry_each",
    "add_dnc_each",
    "fail_batch",
]


@pytest.mark.parametrize("how", STOPS)
def test_seed000_bug12_every_way_of_stopping_work_finishes_the_batch_with_one_report(
    api: SqlApi, how: str
) -> None:
    """Seed 000 bug 12: one of the two cancel paths never ran the completion check, so no report
    was made. Here completion is decided by a trigger on the batch row, whatever ended the last
    entry: cancel (at once, or when the live calls end), cancelling every entry, the do-not-call
    list, fail_batch - each finishes the batch exactly once with exactly one report row."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(4), REPORT_TO)
    entries = entries_of(api.conn, batch)
    expected_status, expected = "cancelled", tally(cancelled=4)
    if how == "cancel_batch":
        assert api.cancel_batch(tenant, batch) == 4
    elif how == "cancel_batch_with_live_calls":
        calls = api.dispatch_all()
        assert api.cancel_batch(tenant, batch) == 2
        api.finish_call(calls[0], "ended")
        assert report_rows(api.conn, batch) == [], "one call is still live"
        api.finish_call(calls[1], "voicemail")
        expected = tally(cancelled=2, completed=1, declined=1)
    elif how == "cancel_entry_each":
        for e in entries:
            assert api.cancel_entry(tenant, e["id"]) is True
        expected_status = "completed"
    elif how == "add_dnc_each":
        for e in entries:
            api.add_dnc(tenant, e["to_phone"])
        expected_status = "completed"
    else:
        assert api.fail_batch(tenant, batch, "admin") == 4
        expected_status = "failed"
    status = api.batch_status(tenant, batch)
    assert (status["status"], counts(status)) == (expected_status, expected)
    assert status["finished_at"] is not None
    assert report_rows(api.conn, batch) == [
        {"status": "pending", "recipients": ["ops@example.com"], "attempts": 0, "last_error": None}
    ]
    if expected_status == "cancelled":
        before = all_rows(api.conn)
        assert api.cancel_batch(tenant, batch) == 0, "cancelling again does nothing"
        assert all_rows(api.conn) == before

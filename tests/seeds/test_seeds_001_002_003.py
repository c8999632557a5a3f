"""Seeds 001-003: one named test per failure of the fix notes in shared/seeds/001 (a Twilio call
queue: "3 calls and stop", no stop button, a business data leak, duplicate calls, several
workers on one run, crash resume) and 002 (a batch stuck "processing": completion rolled back by
a failing aggregation, two identifiers for one batch), and for the reference design 003's
behaviour the others broke. Helpers come from tests/helpers/checks.py, as seed 000's do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from batchctl.identifiers import call_log_id
from checks import (
    REPORT_TO,
    Conn,
    all_rows,
    counts,
    entries_of,
    later,
    rejected,
    report_rows,
    tally,
)
from concurrent_calls import connect, run_threads
from pgtools import one_row
from sqlapi import Claim, SqlApi, live_calls, phones

# --- seed 001 issue 1: "3 calls and stop" -------------------------------------------------------


def dial(api: SqlApi, claims: list[Claim]) -> list[UUID]:
    """The daemon's acknowledgement, then the agent answering: live calls."""
    calls = [api.mark_dispatched(c.entry_id, c.room_name) for c in claims]
    for call in calls:
        api.report(call, "ongoing")
    return calls


def test_seed001_three_calls_and_stop_a_batch_bigger_than_the_cap_runs_to_the_end(
    api: SqlApi,
) -> None:
    """Seed 001 "3 calls and stop": with 3 slots per business, jobs that found no free slot were
    skipped, and the queue stopped after 3 calls. Here a claim with the slots full returns
    nothing and changes nothing (the entries wait, queued), and each slot freed is refilled:
    all 10 numbers are dialled, each once, never more than 3 at a time."""
    tenant = api.create_tenant(max_concurrent_calls=3)
    batch = api.create_batch(tenant, phones(10))
    dialled: list[UUID] = []
    while True:
        status = api.batch_status(tenant, batch)
        free = 3 - status["running"] - status["dispatched"]
        claims = api.claim(limit=10)
        assert len(claims) == min(free, status["queued"])
        dialled += [c.entry_id for c in claims]
        dial(api, claims)
        live = live_calls(api.conn, batch)
        if not live:
            break
        if api.batch_status(tenant, batch)["queued"]:
            before = all_rows(api.conn)
            assert api.claim(limit=10) == [], "every slot is taken: wait"
            assert all_rows(api.conn) == before, "waiting skips nothing"
        assert len(live) <= 3
        api.report(live[0], "ended")
    assert sorted(dialled) == sorted(e["id"] for e in entries_of(api.conn, batch))
    status = api.batch_status(tenant, batch)
    assert (status["status"], counts(status)) == ("completed", tally(completed=10))


def test_seed001_three_calls_and_stop_a_number_on_a_call_waits_instead_of_being_skipped(
    api: SqlApi,
) -> None:
    """Seed 001 "3 calls and stop", the root cause: a job whose number was 'already queued' was
    skipped. Here a number already on a call (from another batch of the tenant) is simply not
    claimed yet; it stays queued and is dialled once that call ends."""
    tenant = api.create_tenant(max_concurrent_calls=5)
    shared = "+14155550100"
    one = api.create_batch(tenant, [{"to_phone": shared}, {"to_phone": "+14155550101"}])
    two = api.create_batch(tenant, [{"to_phone": shared}, {"to_phone": "+14155550102"}])
    claims = api.claim(limit=10)
    assert sorted(c.to_phone for c in claims) == [shared, "+14155550101", "+14155550102"]
    calls = dial(api, claims)
    waiting = [
        e
        for b in (one, two)
        for e in entries_of(api.conn, b)
        if e["to_phone"] == shared and e["status"] == "queued"
    ]
    assert len(waiting) == 1 and waiting[0]["last_error"] is None
    assert api.claim(limit=10) == []
    for call, claim in zip(calls, claims, strict=True):
        if claim.to_phone == shared:
            api.report(call, "ended")
    (again,) = api.claim(limit=10)
    assert (again.entry_id, again.to_phone) == (waiting[0]["id"], shared)
    dial(api, [again])
    for call in live_calls(api.conn):
        api.report(call, "ended")
    for b in (one, two):
        assert api.batch_status(tenant, b)["status"] == "completed"


# --- seed 001 issue 2: no stop button -----------------------------------------------------------


def test_seed001_no_stop_button_pause_stops_claims_at_once_and_resume_goes_on(
    api: SqlApi,
) -> None:
    """Seed 001 "no stop button": a running queue could not be stopped, and the later fix only
    stopped "after the current call". Here pause stops claims at once while live calls go on
    and may end (freeing slots that stay unused); resume dispatches again; cancel ends it."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(5))
    first, second = dial(api, api.claim())
    api.pause_batch(tenant, batch)
    assert api.claim() == []
    assert api.report(first, "ended") == "completed", "a live call finishes while paused"
    assert api.claim() == [], "a freed slot is not refilled while paused"
    status = api.batch_status(tenant, batch)
    assert (status["status"], counts(status)) == (
        "paused",
        tally(queued=3, dispatched=1, completed=1),
    )
    api.resume_batch(tenant, batch)
    (claimed,) = api.claim()
    assert api.cancel_batch(tenant, batch) == 3
    assert counts(api.batch_status(tenant, batch)) == tally(dispatched=1, completed=1, cancelled=3)
    hangups = {(h["room_name"], h["call_log_id"]) for h in api.claim_hangups()}
    # The live call, and the claim's room, which LiveKit may have though no call log says so.
    room = one_row(api.conn, "select room_name from batchctl.call_logs where id = %s", (second,))
    assert hangups == {(room["room_name"], second), (claimed.room_name, None)}


# --- seed 001 issue 3: business data leak -------------------------------------------------------


@pytest.fixture
def other_tenant(api: SqlApi) -> dict[str, UUID]:
    """Tenant B with a batch in every state and a live call; the ids another tenant might try."""
    b = api.create_tenant("other business", 5)
    running = api.create_batch(b, phones(3, 100))
    (claim,) = api.claim(limit=1)
    dial(api, [claim])
    paused = api.create_batch(b, phones(2, 200))
    api.pause_batch(b, paused)
    pending = api.create_batch(b, phones(2, 300), {"autostart": False})
    queued = next(e["id"] for e in entries_of(api.conn, running) if e["status"] == "queued")
    return {
        "tenant": b,
        "running": running,
        "paused": paused,
        "pending": pending,
        "live_entry": claim.entry_id,
        "queued_entry": queued,
    }


TENANT_CALLS: dict[str, tuple[Callable[[SqlApi, UUID, dict[str, UUID]], Any], str]] = {
    "start_batch": (lambda api, a, b: api.start_batch(a, b["pending"]), "pending"),
    "pause_batch": (lambda api, a, b: api.pause_batch(a, b["running"]), "running"),
    "resume_batch": (lambda api, a, b: api.resume_batch(a, b["paused"]), "paused"),
    "cancel_batch": (lambda api, a, b: api.cancel_batch(a, b["running"], "x"), "running"),
    "fail_batch": (lambda api, a, b: api.fail_batch(a, b["running"], "x"), "running"),
    "batch_status": (lambda api, a, b: api.batch_status(a, b["running"]), "running"),
    "cancel_entry_queued": (
        lambda api, a, b: api.cancel_entry(a, b["queued_entry"]),
        "queued_entry",
    ),
    "cancel_entry_live": (lambda api, a, b: api.cancel_entry(a, b["live_entry"]), "live_entry"),
}


@pytest.mark.parametrize("name", list(TENANT_CALLS))
def test_seed001_tenant_leak_another_tenants_ids_are_not_found_and_change_nothing(
    api: SqlApi, other_tenant: dict[str, UUID], name: str
) -> None:
    """Seed 001 business data leak: one business could read and control another's queue. Here a
    tenant-facing function called with tenant A's id and B's batch or entry raises BC002 with the
    same message as for an id that does not exist (no hint that it does), and changes nothing.
    This is the functions' own tenant check, on a worker connection where row-level security
    does not apply (the RLS side is tests/sql/test_tenancy.py)."""
    a = api.create_tenant("a business")
    api.create_batch(a, phones(1, 900))
    call, key = TENANT_CALLS[name]
    target = other_tenant[key]
    kind = "entry" if key.endswith("entry") else "batch"
    message = rejected(
        api.conn, "BC002", lambda: call(api, a, other_tenant), f"{kind} {target} not found"
    )
    made_up = {k: uuid4() for k in other_tenant}
    unknown = rejected(api.conn, "BC002", lambda: call(api, a, made_up))
    assert message.replace(str(target), "<id>") == unknown.replace(str(made_up[key]), "<id>")


def test_seed001_tenant_leak_a_do_not_call_entry_stays_within_its_tenant(
    api: SqlApi, other_tenant: dict[str, UUID]
) -> None:
    """Seed 001 business data leak, through shared numbers: tenant A putting numbers on its
    do-not-call list cancels only A's entries for them; B's queued and live entries with the same
    numbers are untouched (no hang-up either), and B's list does not stop A from dialling."""
    b_batches = (other_tenant["running"], other_tenant["paused"])
    b_entries = [e for batch in b_batches for e in entries_of(api.conn, batch)]
    shared = [
        e["to_phone"]
        for e in b_entries
        if e["id"] in (other_tenant["live_entry"], other_tenant["queued_entry"])
    ]
    api.add_dnc(other_tenant["tenant"], "+14155559999")
    a = api.create_tenant("a business", 5)
    mine = api.create_batch(a, [{"to_phone": p} for p in [*shared, "+14155559999"]])
    assert api.batch_status(a, mine)["dnc_skipped"] == 0
    for phone in shared:
        api.add_dnc(a, phone)
    assert [(e["to_phone"], e["status"], e["last_error"]) for e in entries_of(api.conn, mine)] == [
        *[(phone, "cancelled", "dnc") for phone in shared],
        ("+14155559999", "queued", None),
    ]
    assert [e for batch in b_batches for e in entries_of(api.conn, batch)] == b_entries
    assert api.claim_hangups() == []


# --- seed 001 issue 4: duplicate calls, several workers, crash resume ---------------------------


def test_seed001_duplicate_calls_a_lead_listed_twice_is_one_entry(api: SqlApi) -> None:
    """Seed 001 duplicate calls to one lead: the fix was a unique constraint. Here a number given
    twice in a batch keeps its first entry (the repeat is counted in batch_status), and a second
    entry for it cannot be inserted behind the API's back either."""
    tenant = api.create_tenant()
    entries = [{"to_phone": "+14155550100", "lead_name": "first"}, *phones(1, 101)]
    entries.append({"to_phone": "+14155550100", "lead_name": "again"})
    batch = api.create_batch(tenant, entries)
    status = api.batch_status(tenant, batch)
    assert (status["total"], status["duplicates"]) == (2, 1)
    (first,) = [e for e in entries_of(api.conn, batch) if e["to_phone"] == "+14155550100"]
    lead = api.conn.execute(
        "select lead_name from batchctl.batch_entries where id = %s", (first["id"],)
    ).fetchone()
    assert lead == {"lead_name": "first"}
    rejected(
        api.conn,
        "23505",
        lambda: api.conn.execute(
            """insert into batchctl.batch_entries (batch_id, tenant_id, entry_index, to_phone)
               values (%s, %s, 9, '+14155550100')""",
            (batch, tenant),
        ),
        "batch_entries_batch_id_to_phone_tenant_id_key",
    )


def test_seed001_duplicate_calls_a_repeated_dispatch_acknowledgement_is_one_call(
    api: SqlApi,
) -> None:
    """Seed 001 duplicate calls (the call-SID de-duplication): a daemon repeating its
    acknowledgement of a dispatch gets the same call back, not a second call; an acknowledgement
    naming another room than the claim's is refused."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    (claim,) = api.claim()
    rejected(
        api.conn,
        "BC001",
        lambda: api.mark_dispatched(claim.entry_id, claim.room_name + "-x"),
        "is not the claimed attempt's room",
    )
    call = api.mark_dispatched(claim.entry_id, claim.room_name, "AD_1")
    before = all_rows(api.conn)
    assert api.mark_dispatched(claim.entry_id, claim.room_name, "AD_1") == call
    assert all_rows(api.conn) == before
    assert counts(api.batch_status(tenant, batch)) == tally(dispatched=1)


def test_seed001_duplicate_calls_one_number_in_several_batches_is_never_on_two_calls(
    db_url: str, api: SqlApi
) -> None:
    """Seed 001 duplicate calls, under concurrency: the same 4 numbers in 3 batches of a tenant,
    4 daemons claiming at once. Each round dials each number exactly once; over the rounds each
    number is called once per batch, and never twice at the same time (call intervals of one
    number do not overlap). (Distinct entries under concurrent claims: test_concurrency.py.)"""
    tenant = api.create_tenant(max_concurrent_calls=12)
    batches = [api.create_batch(tenant, phones(4)) for _ in range(3)]
    workers = [connect(db_url) for _ in range(4)]
    try:
        for _round in range(3):
            barrier = threading.Barrier(len(workers))

            def claim(i: int, barrier: threading.Barrier = barrier) -> list[Claim]:
                daemon = SqlApi(workers[i])
                barrier.wait()
                claims = daemon.claim(f"daemon-{i}", limit=4)
                for c in claims:
                    daemon.mark_dispatched(c.entry_id, c.room_name)
                return claims

            claimed = [c for got in run_threads(len(workers), claim) for c in got]
            assert sorted(c.to_phone for c in claimed) == [p["to_phone"] for p in phones(4)]
            for call in live_calls(api.conn):
                api.finish_call(call)
    finally:
        for w in workers:
            w.close()
    for batch in batches:
        assert counts(api.batch_status(tenant, batch)) == tally(completed=4)
    overlaps = one_row(
        api.conn,
        """select count(*) as n
             from batchctl.call_logs x
             join batchctl.batch_entries ex on ex.id = x.entry_id
             join batchctl.call_logs y on y.id <> x.id
             join batchctl.batch_entries ey on ey.id = y.entry_id and ey.to_phone = ex.to_phone
            where tstzrange(x.started_at, x.ended_at) && tstzrange(y.started_at, y.ended_at)""",
    )
    assert overlaps["n"] == 0


def test_seed001_duplicate_calls_a_number_whose_claim_may_have_dialled_stays_busy(
    api: SqlApi,
) -> None:
    """Seed 001 duplicate calls, after a crash: a daemon claims a number in batch 1, may have
    dialled it, and dies before acknowledging. When its lease runs out, that call may still be
    live at LiveKit although no call log says so: the same number in batch 2 is not claimed
    until a claim of batch 1's entry is acknowledged (the re-claim adopts the dispatch)."""
    tenant = api.create_tenant(max_concurrent_calls=5)
    first = api.create_batch(tenant, phones(1))
    (dead,) = api.claim("dead-daemon")
    second = api.create_batch(tenant, phones(1))
    assert api.claim("other-daemon") == [], "the number is on a claim"
    assert api.sweep(later(seconds=61))["leases_expired"] == 1
    (again,) = api.claim("other-daemon")
    assert (again.batch_id, again.room_name) == (first, dead.room_name), "batch 1's entry first"
    assert api.claim("other-daemon") == []
    api.mark_dispatch_unknown(again.entry_id, "livekit request timed out")
    assert api.claim("other-daemon") == [], "still maybe dialling: batch 2 waits"
    api.conn.execute("update batchctl.batch_entries set next_attempt_at = now()")
    (third,) = api.claim("other-daemon")
    api.finish_call(api.mark_dispatched(third.entry_id, third.room_name))
    (last,) = api.claim("other-daemon")
    assert last.batch_id == second


def test_seed001_several_workers_on_one_batch_share_it_without_overlap(
    db_url: str, api: SqlApi
) -> None:
    """Seed 001 several workers on one run: the fix was a worker lock with a heartbeat. Here any
    number of daemons claim from the same batch at once: every entry is handed to exactly one of
    them (its claim event names which), in flight never passes the cap, and the batch completes."""
    tenant = api.create_tenant(max_concurrent_calls=5)
    batch = api.create_batch(tenant, phones(20))
    workers = [connect(db_url) for _ in range(4)]
    claimed: list[Claim] = []
    try:
        for _round in range(40):
            barrier = threading.Barrier(len(workers))

            def claim(i: int, barrier: threading.Barrier = barrier) -> list[Claim]:
                daemon = SqlApi(workers[i])
                barrier.wait()
                return daemon.claim(f"daemon-{i}", limit=2)

            got = [c for claims in run_threads(len(workers), claim) for c in claims]
            assert api.batch_status(tenant, batch)["running"] == len(got) <= 5
            claimed += got
            for c in got:
                api.finish_call(api.mark_dispatched(c.entry_id, c.room_name))
            if api.batch_status(tenant, batch)["finished_at"] is not None:
                break
    finally:
        for w in workers:
            w.close()
    assert sorted(c.entry_id for c in claimed) == sorted(
        e["id"] for e in entries_of(api.conn, batch)
    )
    claims = api.conn.execute(
        """select reason from batchctl.events
            where batch_id = %s and object = 'entry' and to_status = 'running'""",
        (batch,),
    ).fetchall()
    assert len(claims) == 20
    assert {r["reason"] for r in claims} <= {f"claim_entries: daemon-{i}" for i in range(4)}
    assert counts(api.batch_status(tenant, batch)) == tally(completed=20)


def test_seed001_crash_resume_a_dead_workers_claims_return_with_the_same_attempt_and_room(
    db_url: str, api: SqlApi
) -> None:
    """Seed 001 crash recovery / resume: progress lived in a cursor in the worker. Here a daemon
    that claims and dies leaves leases, not lost work: while a lease runs nothing takes its
    entries; after it, the sweep re-queues them and another daemon gets the same attempt and room
    name, so the call log id is the one the dead daemon would have made and a late
    acknowledgement of its own dispatch is the same call. The batch completes, nothing lost and
    no number dialled twice."""
    tenant = api.create_tenant(max_concurrent_calls=3)
    batch = api.create_batch(tenant, phones(5), REPORT_TO)
    with connect(db_url) as crashed:
        lost = SqlApi(crashed).claim("host-a:1", limit=3, lease_seconds=60)
    assert len(lost) == 3 and {c.attempt for c in lost} == {1}

    assert api.sweep(later(seconds=30))["leases_expired"] == 0, "a live lease is not taken"
    assert api.claim("host-b:2") == []
    assert api.sweep(later(minutes=2))["leases_expired"] == 3
    again = api.claim("host-b:2", limit=3)
    assert sorted((c.entry_id, c.attempt, c.room_name) for c in again) == sorted(
        (c.entry_id, c.attempt, c.room_name) for c in lost
    )
    calls = [api.mark_dispatched(c.entry_id, c.room_name) for c in again]
    assert calls == [call_log_id(c.room_name) for c in again]
    # host-a had got LiveKit to accept one dispatch: its late acknowledgement is that call.
    assert api.mark_dispatched(lost[0].entry_id, lost[0].room_name) == call_log_id(
        lost[0].room_name
    )
    while live := live_calls(api.conn, batch):
        for call in live:
            api.finish_call(call)
        api.dispatch_all("host-b:2")
    status = api.batch_status(tenant, batch)
    assert (status["status"], counts(status)) == ("completed", tally(completed=5))
    dials = api.conn.execute(
        """select e.to_phone, count(*) as n, max(c.attempt) as attempt
             from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id
            where c.batch_id = %s group by e.to_phone""",
        (batch,),
    ).fetchall()
    assert len(dials) == 5 and {(d["n"], d["attempt"]) for d in dials} == {(1, 1)}
    requeued = one_row(
        api.conn,
        """select count(*) as n from batchctl.events where batch_id = %s and object = 'entry'
              and from_status = 'running' and to_status = 'queued'
              and reason = 'sweep: lease_expired'""",
        (batch,),
    )
    assert requeued["n"] == 3
    assert len(report_rows(api.conn, batch)) == 1


# --- seed 002: completion rolled back; two identifiers ------------------------------------------


def batch_row(conn: Conn, batch: UUID) -> dict[str, Any]:
    row = conn.execute("select * from batchctl.batches where id = %s", (batch,)).fetchone()
    assert row is not None
    return row


def test_seed002_a_failing_report_never_touches_the_finished_batch(api: SqlApi) -> None:
    """Seed 002: the batch's status was written in the transaction of its aggregation step, and
    when that step failed the completion rolled back: "processing" forever. Here the batch
    completes in the transaction of its last call; the report is an outbox row sent later. A
    sender that crashes mid-transaction, and one that fails every attempt up to the limit, leave
    the batch row (status, counters, finished_at, updated_at) exactly as it was."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(2), {**REPORT_TO, "report_delay_s": 0})
    for call in api.dispatch_all():
        api.finish_call(call)
    finished = batch_row(api.conn, batch)
    status = api.batch_status(tenant, batch)
    assert finished["status"] == "completed" and finished["finished_at"] is not None

    with pytest.raises(RuntimeError), api.conn.transaction():
        assert api.claim_report("mailer")
        raise RuntimeError("the report builder crashed")
    assert [r["attempts"] for r in report_rows(api.conn, batch)] == [0]
    for attempt in range(1, 6):
        claimed = api.claim_report("mailer")
        assert claimed is not None and (claimed["batch_id"], claimed["attempt"]) == (batch, attempt)
        api.report_failed(batch, "smtp: 554 rejected")
        assert batch_row(api.conn, batch) == finished
        assert api.batch_status(tenant, batch) == status
        api.conn.execute("update batchctl.reports set next_attempt_at = now()")  # time passes
    assert report_rows(api.conn, batch) == [
        {
            "status": "failed",
            "recipients": ["ops@example.com"],
            "attempts": 5,
            "last_error": "smtp: 554 rejected",
        }
    ]
    assert api.claim_report("mailer") is None, "given up after the fifth attempt"
    rejected(api.conn, "BC003", lambda: api.report_failed(batch, "again"), "is failed, not sending")
    assert batch_row(api.conn, batch) == finished


def test_seed002_one_identifier_names_the_batch_everywhere(api: SqlApi) -> None:
    """Seed 002: a batch had a batch_id and a run_id, code and views mixed them, and the counts
    joined on the wrong one came out 0. Here the one id create_batch returns is what
    batch_status, claims, entries, calls, events, hang-ups, the report row and the mailer's claim
    all carry, and every reference to a batch in the schema is a batch_id column."""
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(3), {**REPORT_TO, "report_delay_s": 0})
    claims = api.claim()
    calls = dial(api, claims)
    api.report(calls[0], "ended")
    api.cancel_batch(tenant, batch)
    for h in api.claim_hangups():
        api.hangup_done(h["room_name"])
    report = api.claim_report("mailer")

    assert api.batch_status(tenant, batch)["batch_id"] == str(batch)
    assert {c.batch_id for c in claims} == {batch}
    assert report is not None and report["batch_id"] == batch
    for table in ("batch_entries", "call_logs", "events", "reports", "hangups"):
        ids = api.conn.execute(f"select distinct batch_id from batchctl.{table}").fetchall()
        assert [r["batch_id"] for r in ids] == [batch], table
    objects = api.conn.execute(
        "select distinct object_id from batchctl.events where object = 'batch'"
    ).fetchall()
    assert [r["object_id"] for r in objects] == [batch]

    references = api.conn.execute(
        """select array(select a.attname::text from unnest(c.conkey) with ordinality k(n, i)
                          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n
                         order by k.i) as cols
             from pg_constraint c
            where c.contype = 'f' and c.confrelid = 'batchctl.batches'::regclass"""
    ).fetchall()
    assert references and {tuple(r["cols"]) for r in references} == {("tenant_id", "batch_id")}
    names = api.conn.execute(
        """select distinct column_name::text as c from information_schema.columns
            where table_schema = 'batchctl'
              and (column_name like '%batch%'
                   or column_name ~ '(^|_)run(_|$)'  -- a run_id, not a trunk_id
                   or column_name like '%job%')"""
    ).fetchall()
    assert [r["c"] for r in names] == ["batch_id"]


# --- seed 003: the reference design's behaviour -------------------------------------------------


def test_seed003_the_reference_defaults_are_kept(api: SqlApi) -> None:
    """Seed 003, configuration: wave size 15, 2 re-dispatches of a call never picked up, 20
    minutes to pick up or ring, 15 minutes ongoing, the report 15 s after the end."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    reference = {
        "wave_size": 15,
        "max_retries": 2,
        "pickup_timeout_s": 1200,
        "ringing_timeout_s": 1200,
        "ongoing_timeout_s": 900,
        "report_delay_s": 15,
    }
    options = batch_row(api.conn, batch)["options"]
    assert {k: options[k] for k in reference} == reference


def test_seed003_a_lost_callback_cannot_leave_an_entry_behind_its_call(api: SqlApi) -> None:
    """Seed 003, status sync: the worker wrote the call log and a separate callback moved the
    entry, so a lost callback left entries 'dispatched' behind finished calls until a reconcile
    step ran. Here the entry follows its call in the same transaction, even when the call log is
    written directly rather than through report_call_status."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1))
    (call,) = api.dispatch_all()
    api.conn.execute("update batchctl.call_logs set status = 'no_answer' where id = %s", (call,))
    (entry,) = entries_of(api.conn, batch)
    assert (entry["status"], entry["outcome"]) == ("declined", "no_answer")
    status = api.batch_status(tenant, batch)
    assert (status["status"], counts(status)) == ("completed", tally(declined=1))

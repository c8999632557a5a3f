"""A dispatch whose outcome is unknown keeps its call slot (sql/032, sql/050): the cap must hold
at LiveKit, not only in our rows. When a daemon dies after CreateDispatch (its lease runs out)
or CreateDispatch's answer is lost (mark_dispatch_unknown), LiveKit may have the call: the
entry goes back to the queue but stays in flight for its tenant's and batch's caps until a
claim of it settles the dispatch (adopts it, or finds none and dials in the same slot), or the
batch's pickup timeout passes. A claim that may have dialled and ends without a call has its
room hung up. tests/test_cap_at_livekit.py shows the same with real daemons and the simulator.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from sqlapi import Claim, SqlApi, phones


def entry(conn: psycopg.Connection[Any], entry_id: UUID) -> dict[str, Any]:
    row = conn.execute(
        """select status::text, dispatch_unconfirmed, slot_held_until > now() as holds,
                  dispatch_failures, last_error
             from batchctl.batch_entries where id = %s""",
        (entry_id,),
    ).fetchone()
    assert row is not None
    return row


def due_now(conn: psycopg.Connection[Any], entry_id: UUID) -> None:
    """Its retry delay has passed (as a test's clock would have it)."""
    conn.execute(
        "update batchctl.batch_entries set next_attempt_at = now() where id = %s", (entry_id,)
    )


def later(seconds: float) -> datetime:
    return datetime.now().astimezone() + timedelta(seconds=seconds)


def test_a_claim_whose_lease_ran_out_keeps_its_slot_until_a_claim_settles_it(api: SqlApi) -> None:
    """Cap 1, two batches (so the claim's fairness would pick the other one): a daemon claims
    A and dies. After its lease A is queued, unconfirmed, and still holds the tenant's only
    slot: the next claim hands out A again (to look for its room), not B."""
    tenant = api.create_tenant("acme", 1)
    first = api.create_batch(tenant, phones(1))
    second = api.create_batch(tenant, phones(1, 10))
    (dead,) = api.claim("dead-daemon")
    assert dead.batch_id == first
    assert api.sweep(later(61))["leases_expired"] == 1
    assert entry(api.conn, dead.entry_id) == {
        "status": "queued", "dispatch_unconfirmed": True, "holds": True,
        "dispatch_failures": 0, "last_error": "lease_expired",
    }  # fmt: skip
    assert api.batch_status(tenant, first)["queued"] == 1
    (again,) = api.claim("other-daemon", limit=5)
    assert (again.entry_id, again.room_name, again.dispatch_unconfirmed) == (
        dead.entry_id, dead.room_name, True,
    )  # fmt: skip
    assert api.claim("other-daemon") == [], "the slot is A's while it is claimed"
    call = api.mark_dispatched(again.entry_id, again.room_name)  # the room was there: adopted
    assert entry(api.conn, dead.entry_id)["holds"] is None
    api.finish_call(call)
    (b,) = api.claim("other-daemon")
    assert b.batch_id == second


def test_an_unknown_dispatch_outcome_keeps_the_slot_and_a_refusal_gives_it_back(
    api: SqlApi,
) -> None:
    tenant = api.create_tenant("acme", 1)
    api.create_batch(tenant, phones(2))
    (a,) = api.claim()
    assert api.mark_dispatch_unknown(a.entry_id, "livekit request timed out") == "queued"
    assert entry(api.conn, a.entry_id)["holds"] is True
    assert api.claim() == [], "A is not due for 5 s, and B has no slot"
    due_now(api.conn, a.entry_id)
    (again,) = api.claim()
    assert (again.entry_id, again.dispatch_unconfirmed) == (a.entry_id, True)
    # The daemon looked, found no room, dispatched again and LiveKit refused: no dispatch exists.
    assert api.mark_dispatch_failed(again.entry_id, "livekit unavailable (503)") == "queued"
    assert entry(api.conn, a.entry_id) == {
        "status": "queued", "dispatch_unconfirmed": False, "holds": None,
        "dispatch_failures": 2, "last_error": "livekit unavailable (503)",
    }  # fmt: skip
    (b,) = api.claim()
    assert b.entry_id != a.entry_id


def test_a_hold_ends_when_the_pickup_timeout_has_passed(api: SqlApi) -> None:
    tenant = api.create_tenant("acme", 1)
    api.create_batch(tenant, phones(2), {"pickup_timeout_s": 1})
    (a,) = api.claim()
    api.mark_dispatch_unknown(a.entry_id, "livekit request timed out")
    assert api.claim() == []
    time.sleep(1.1)
    (b,) = api.claim()
    assert b.entry_id != a.entry_id
    # A's number is still busy for other batches until a claim of A is acknowledged.
    assert entry(api.conn, a.entry_id)["dispatch_unconfirmed"] is True


def test_unknown_outcomes_end_an_entry_only_once_its_hold_is_over(api: SqlApi) -> None:
    """Five dispatch failures end an entry, but not while its dispatch may be live and holds the
    slot; once it ends, its room is hung up (it has no call log)."""
    tenant = api.create_tenant("acme", 1)
    api.create_batch(tenant, phones(1), {"pickup_timeout_s": 1})

    def claim_again() -> Claim:
        due_now(api.conn, claimed.entry_id)
        (again,) = api.claim()
        return again

    (claimed,) = api.claim()
    for _ in range(6):
        assert api.mark_dispatch_unknown(claimed.entry_id, "timed out") == "queued"
        claimed = claim_again()
    assert entry(api.conn, claimed.entry_id)["dispatch_failures"] == 6
    time.sleep(1.1)
    assert api.mark_dispatch_unknown(claimed.entry_id, "timed out") == "failed"
    hangups = api.claim_hangups()
    assert [(h["room_name"], h["call_log_id"]) for h in hangups] == [(claimed.room_name, None)]
    api.hangup_done(claimed.room_name)
    assert entry(api.conn, claimed.entry_id)["status"] == "failed"


def test_a_claim_that_may_have_dialled_and_ends_without_a_call_has_its_room_hung_up(
    api: SqlApi,
) -> None:
    """Cancelled while claimed (LiveKit may have its dispatch) or while unconfirmed: its room
    goes to the hang-up outbox, with no call log, and hanging it up changes nothing else."""
    tenant = api.create_tenant("acme", 3)
    batch = api.create_batch(tenant, phones(3))
    claimed, unconfirmed, dnc = api.claim()
    api.mark_dispatch_unknown(unconfirmed.entry_id, "timed out")
    assert api.cancel_entry(tenant, claimed.entry_id) is True
    api.add_dnc(tenant, dnc.to_phone)
    assert api.cancel_batch(tenant, batch) == 1
    reasons = {h["room_name"]: (h["call_log_id"], h["reason"]) for h in api.claim_hangups()}
    assert reasons == {
        claimed.room_name: (None, "cancelled"),
        dnc.room_name: (None, "dnc"),
        unconfirmed.room_name: (None, "batch_cancelled"),
    }
    for room in reasons:
        api.hangup_done(room)
    status = api.batch_status(tenant, batch)
    assert (status["status"], status["cancelled"], status["finished_at"] is not None) == (
        "cancelled", 3, True,
    )  # fmt: skip


def test_a_held_entry_counts_against_the_wave(api: SqlApi) -> None:
    tenant = api.create_tenant("acme", 5)
    api.create_batch(tenant, phones(3), {"dispatch_mode": "wave", "wave_size": 2})
    first, second = api.claim()
    api.finish_call(api.mark_dispatched(first.entry_id, first.room_name))
    api.mark_dispatch_unknown(second.entry_id, "timed out")
    assert api.claim() == [], "the wave is not over while its second call may be live"

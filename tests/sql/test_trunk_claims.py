"""The trunks' part of the claim (sql/051, docs/trunks.md): each call's trunk (the batch's
option, else the tenant's default), its pacing slot, the trunk's cap on calls in flight, the
caller ID (local presence, daily caps) and the carrier's back-off. Time is pinned with
batchctl.now (tests/helpers/clockwork.py)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import psycopg
import pytest

from checks import Conn
from clockwork import pin, reasons, ts
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones

NOW = ts("2026-06-16T15:00:00+00:00")
NY, FL, BERLIN = "+12125550100", "+13055550100", "+4915112345678"


def tenant_with_trunk(
    api: SqlApi, max_cps: float = 100, max_concurrent: int | None = None
) -> tuple[UUID, UUID]:
    tenant = api.create_tenant("acme", 50, "America/New_York")
    return tenant, api.create_trunk(tenant, "main", "ST_main", max_cps, max_concurrent)


def test_calls_go_out_on_the_default_trunk_or_the_batch_option(api: SqlApi, conn: Conn) -> None:
    tenant, main = tenant_with_trunk(api)
    backup = api.create_trunk(tenant, "backup", "ST_backup", 100)
    api.create_batch(tenant, phones(1), {"wave_size": 5})
    optioned = api.create_batch(tenant, phones(1, 10), {"trunk": "backup"})
    assert one_value(
        conn, "select options ->> 'trunk' from batchctl.batches where id = %s", (optioned,)
    ) == str(backup)  # kept as the id: a rename changes nothing
    pin(conn, NOW)
    claims = api.claim_entries("w", 10, 60)
    assert {(c.batch_id == optioned, c.livekit_trunk_id) for c in claims} == {
        (False, "ST_main"),
        (True, "ST_backup"),
    }
    for c in claims:
        call = api.mark_dispatched(c.entry_id, c.room_name, "d")
        row = one_row(conn, "select trunk_id from batchctl.call_logs where id = %s", (call,))
        assert row["trunk_id"] == (backup if c.batch_id == optioned else main)


def test_a_batch_option_naming_no_trunk_of_the_tenant_is_refused(api: SqlApi) -> None:
    tenant, _ = tenant_with_trunk(api)
    with pytest.raises(psycopg.Error, match='no trunk "other"; its trunks: main'):
        api.create_batch(tenant, phones(1), {"trunk": "other"})


def test_without_a_trunk_calls_go_out_as_before(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant("acme", 5)
    api.create_batch(tenant, phones(3))
    claims = api.claim_entries("w", 10, 60)
    assert len(claims) == 3
    assert {(c.livekit_trunk_id, c.caller_id, c.dial_at) for c in claims} == {(None, None, None)}


def test_calls_are_paced_by_the_trunks_rate(api: SqlApi, conn: Conn) -> None:
    """2 calls a second: slots 1.04 / 2 s apart, as many as fall within the next second. A call
    slotted at once (the trunk idle) starts late by the claim's and the dispatch's time: the
    slot after it is one spacing further."""
    tenant, trunk = tenant_with_trunk(api, max_cps=2)
    api.create_batch(tenant, phones(10), {"wave_size": 10})
    pin(conn, NOW)
    first = api.claim_entries("w", 10, 60)
    assert [c.dial_at for c in first] == [NOW]
    assert api.claim_entries("w", 10, 60) == []  # the trunk's next slot is a second away
    pin(conn, NOW + timedelta(seconds=1))
    second = sorted(c.dial_at for c in api.claim_entries("w", 10, 60) if c.dial_at)
    assert second == [NOW + timedelta(seconds=1.04), NOW + timedelta(seconds=1.56)]
    assert api.trunk_status(tenant, trunk)["in_flight"] == 3  # claimed: the cap counts them
    pin(conn, NOW + timedelta(seconds=5))  # idle again
    third = sorted(c.dial_at for c in api.claim_entries("w", 10, 60) if c.dial_at)
    assert third == [NOW + timedelta(seconds=5)]


def test_a_trunks_cap_on_calls_in_flight_holds(api: SqlApi, conn: Conn) -> None:
    tenant, _ = tenant_with_trunk(api, max_concurrent=2)
    api.create_batch(tenant, phones(5), {"wave_size": 5})
    pin(conn, NOW)
    assert len(api.claim_entries("w", 10, 60)) == 2
    pin(conn, NOW + timedelta(seconds=5))
    assert api.claim_entries("w", 10, 60) == []


def test_the_caller_id_is_local_when_the_pool_has_one_else_the_least_used(
    api: SqlApi, conn: Conn
) -> None:
    tenant, trunk = tenant_with_trunk(api)
    api.add_caller_ids(tenant, trunk, ["+12125559999", "+13055559999", "+13055558888"])
    api.create_batch(
        tenant, [{"to_phone": NY}, {"to_phone": FL}, {"to_phone": BERLIN}], {"wave_size": 5}
    )
    pin(conn, NOW)
    chosen = {c.to_phone: c.caller_id for c in api.claim_entries("w", 10, 60)}
    assert chosen[NY] == "+12125559999"  # New York's area code
    assert chosen[FL] in ("+13055559999", "+13055558888")  # Miami's
    # Berlin has no local number: the least used today, which the two above are not.
    assert chosen[BERLIN] == ({"+13055559999", "+13055558888"} - {chosen[FL]}).pop()


def test_no_caller_id_passes_its_daily_cap_and_the_call_waits_a_day(
    api: SqlApi, conn: Conn
) -> None:
    tenant, trunk = tenant_with_trunk(api)
    api.add_caller_ids(tenant, trunk, ["+13055559999"], 2)
    api.create_batch(tenant, phones(3), {"wave_size": 5})
    pin(conn, NOW)
    claims = api.claim_entries("w", 10, 60)
    assert len(claims) == 2
    held = one_row(
        conn, "select id, next_attempt_at from batchctl.batch_entries where status = 'queued'"
    )
    assert held["next_attempt_at"] == ts("2026-06-17T00:00:00-04:00")  # New York's midnight
    assert reasons(conn, held["id"]) == ["caller_ids_at_cap"]
    assert api.trunk_status(tenant, trunk)["caller_ids"][0]["today"] == 2  # as the cap counts


SIP_503 = {"sip_status_code": 503, "error": "SIP 503 Service Unavailable"}


def entry_row(conn: Conn, entry: UUID) -> dict[str, object]:
    return one_row(
        conn,
        """select status::text, attempts, carrier_refusals, dispatch_failures, last_error,
                  case when next_attempt_at > '-infinity' then next_attempt_at end as due
             from batchctl.batch_entries where id = %s""",
        (entry,),
    )


def test_a_carrier_refusal_backs_the_trunk_off_without_using_an_attempt(
    api: SqlApi, conn: Conn
) -> None:
    """The call was placed (its call log exists: a sip-mode dial, or the agent's) and the carrier
    answered 503: its entry is tried again after the trunk's back-off though the batch allows one
    attempt and no retry; the other trunk goes on meanwhile; a call the carrier takes ends the
    back-off."""
    tenant, trunk = tenant_with_trunk(api)
    api.create_trunk(tenant, "other", "ST_other", 100)
    api.add_caller_ids(tenant, trunk, ["+13055559999"], 5)
    refused_batch = api.create_batch(tenant, phones(1))
    api.create_batch(tenant, phones(2, 10), {"wave_size": 1, "trunk": "other"})
    pin(conn, NOW)
    claims = {c.livekit_trunk_id: c for c in api.claim_entries("w", 10, 60)}
    refused, other = claims["ST_main"], claims["ST_other"]
    call = api.mark_dispatched(refused.entry_id, refused.room_name, "d")
    api.mark_dispatched(other.entry_id, other.room_name, "d")
    assert api.report(call, "failed", SIP_503) == "queued"
    entry = entry_row(conn, refused.entry_id)
    assert entry["status"] == "queued" and entry["carrier_refusals"] == 1
    assert (entry["attempts"], entry["dispatch_failures"]) == (1, 0)
    assert entry["last_error"] == "carrier refused: SIP 503 Service Unavailable"
    status = api.trunk_status(tenant, trunk)
    assert status["backoff"]["refusals"] == 1 and status["backoff"]["active"] is True
    until = ts(status["backoff"]["until"])
    assert NOW + timedelta(seconds=1) <= until <= NOW + timedelta(seconds=1.25)  # 1 s + ≤ 1/4
    assert entry["due"] == until
    # The caller ID's call counts: the carrier saw it (docs/trunks.md).
    assert status["caller_ids"][0]["today"] == 1
    pin(conn, NOW + timedelta(seconds=0.5))
    assert api.claim_entries("w", 10, 60) == []  # main: back-off; other: wave of 1 in flight
    pin(conn, until + timedelta(milliseconds=1))
    again = api.claim_entries("w", 10, 60)
    assert [(c.batch_id, c.livekit_trunk_id, c.attempt) for c in again] == [
        (refused_batch, "ST_main", 2)
    ]
    second = api.mark_dispatched(again[0].entry_id, again[0].room_name, "d")
    assert api.trunk_status(tenant, trunk)["backoff"]["refusals"] == 1  # not taken yet
    api.report(second, "ongoing")
    assert api.trunk_status(tenant, trunk)["backoff"] == {
        "refusals": 0, "until": None, "active": False
    }  # fmt: skip
    assert api.report(second, "completed") == "completed"


def test_refusals_in_a_row_back_off_exponentially_and_end_an_entry_after_twenty(
    api: SqlApi, conn: Conn
) -> None:
    tenant, trunk = tenant_with_trunk(api)
    batch = api.create_batch(tenant, phones(1))
    at, waits = NOW, []
    for _ in range(20):
        pin(conn, at)
        (claim,) = api.claim_entries("w", 10, 60)
        status = api.report(
            api.mark_dispatched(claim.entry_id, claim.room_name, "d"), "failed", SIP_503
        )
        backoff = api.trunk_status(tenant, trunk)["backoff"]
        waits.append((ts(backoff["until"]) - at).total_seconds())
        at = ts(backoff["until"])
    assert status == "failed"  # the twentieth refusal: no more tries
    assert all(2 ** min(n, 300) <= w <= 2 ** min(n, 300) * 1.25 for n, w in enumerate(waits[:8]))
    assert max(waits) <= 300 * 1.25
    assert entry_row(conn, claim.entry_id)["carrier_refusals"] == 20
    assert api.batch_status(tenant, batch)["failed"] == 1


@pytest.mark.parametrize(
    ("detail", "backs_off"),
    [
        ({"sip_status_code": 486, "error": "SIP 486 Busy Here"}, False),  # a busy callee
        ({"sip_status_code": 486, "carrier_refused": True}, True),  # the agent's carrier says why
        ({"error": "livekit resource_exhausted (429)", "carrier_refused": True}, True),
        ({"sip_status_code": "503"}, True),
    ],
    ids=["486", "486 for capacity", "livekit 429", "503 as text"],
)
def test_what_counts_as_a_capacity_refusal(
    api: SqlApi, conn: Conn, detail: dict[str, object], backs_off: bool
) -> None:
    tenant, trunk = tenant_with_trunk(api)
    api.create_batch(tenant, phones(1))
    pin(conn, NOW)
    (claim,) = api.claim_entries("w", 10, 60)
    status = api.report(api.mark_dispatched(claim.entry_id, claim.room_name, "d"), "busy", detail)
    assert status == ("queued" if backs_off else "declined")  # busy: the entry declined
    assert api.trunk_status(tenant, trunk)["backoff"]["refusals"] == int(backs_off)


def test_without_a_trunk_a_503_is_a_failed_call_as_before(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant("acme", 5)
    api.create_batch(tenant, phones(1))
    (claim,) = api.claim_entries("w", 10, 60)
    call = api.mark_dispatched(claim.entry_id, claim.room_name, "d")
    assert api.report(call, "failed", SIP_503) == "failed"
    assert entry_row(conn, claim.entry_id)["carrier_refusals"] == 0


def test_calls_slotted_before_a_back_off_refused_with_it_do_not_lengthen_it(
    api: SqlApi, conn: Conn
) -> None:
    """Three calls paced into one second, all refused: one back-off of 1 s, not 1 + 2 + 4."""
    tenant, trunk = tenant_with_trunk(api, max_cps=5)
    api.create_batch(tenant, phones(3))
    pin(conn, NOW)
    calls = [
        api.mark_dispatched(c.entry_id, c.room_name, "d") for c in api.claim_entries("w", 3, 60)
    ]
    for call in calls:
        assert api.report(call, "failed", SIP_503) == "queued"
    backoff = api.trunk_status(tenant, trunk)["backoff"]
    assert backoff["refusals"] == 1
    assert ts(backoff["until"]) <= NOW + timedelta(seconds=1.25)
    due = conn.execute("select distinct next_attempt_at from batchctl.batch_entries").fetchall()
    assert [r["next_attempt_at"] for r in due] == [ts(backoff["until"])]


def test_a_trunk_that_cannot_take_calls_leaves_the_picks_to_the_tenants_other_batches(
    api: SqlApi, conn: Conn
) -> None:
    """Batch x's trunk is full, y's is free: a claim of one entry gets y's, though x was served
    less recently (its entries are not offered beyond what its trunk can take)."""
    tenant = api.create_tenant("acme", 5)
    api.create_trunk(tenant, "main", "ST_main", 100, 1)
    api.create_trunk(tenant, "other", "ST_other", 100)
    x = api.create_batch(tenant, phones(3))
    y = api.create_batch(tenant, phones(3, 10), {"trunk": "other"})
    pin(conn, NOW)
    assert [c.batch_id for c in api.claim_entries("w", 1, 60)] == [x]  # main is now full
    assert [c.batch_id for c in api.claim_entries("w", 1, 60)] == [y]
    assert [c.batch_id for c in api.claim_entries("w", 1, 60)] == [y]


def test_a_number_in_two_pools_has_the_least_of_their_caps(api: SqlApi, conn: Conn) -> None:
    tenant, trunk = tenant_with_trunk(api)
    other = api.create_trunk(tenant, "other", "ST_other", 100)
    api.add_caller_ids(tenant, trunk, ["+13055559999"], 1)
    api.add_caller_ids(tenant, other, ["+13055559999"], 5)
    api.create_batch(tenant, phones(1))
    api.create_batch(tenant, phones(2, 10), {"trunk": "other"})
    pin(conn, NOW)
    assert [c.caller_id for c in api.claim_entries("w", 10, 60)] == ["+13055559999"]

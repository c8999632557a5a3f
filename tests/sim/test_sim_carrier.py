"""The simulator as a carrier (batchctl.sim.carrier): per-trunk CPS and concurrency limits that
refuse the excess with SIP 503 before it rings, and the record of every call's start at the
carrier with its trunk and caller ID. Driven through the real livekit-api client, as
tests/sim/test_sim.py drives the rest of the simulator.

The sip-mode tests dial outside any dispatch or into dispatches whose agents report nothing, so
their database (the simulator needs one for its agents) stays empty.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest
from livekit import api

from batchctl.daemon.dispatcher import dispatch_metadata
from batchctl.identifiers import call_log_id
from batchctl.sim import Scenario, ScenarioError, SimStats
from batchctl.sim.carrier import Carrier, CarrierLimits
from batchctl.sim.stats import CarrierStart
from polling import wait_until
from simulator import API_KEY, API_SECRET, RunningSimulator, run_simulator
from sqlapi import SqlApi, phones

FAST = {"join_delay_s": 0.01, "ring_time_s": [0.02, 0.04], "call_length_s": 0.05}
TWO_CPS, ONE_AT_A_TIME, SLOW, UNLISTED = "ST_two_cps", "ST_one_at_a_time", "ST_slow", "ST_free"
CARRIER = {
    "trunks": {
        TWO_CPS: {"max_cps": 2},
        ONE_AT_A_TIME: {"max_concurrent": 1},
        SLOW: {"max_cps": 0.5, "max_concurrent": 5},
    }
}
CALLER = "+13055550100"
PHONE = [p["to_phone"] for p in phones(8)]

Result = api.SIPParticipantInfo | api.ServerError


def scenario(**overrides: Any) -> Scenario:
    plan = {**FAST, "outcomes": {"ended": 1}, "carrier": CARRIER, **overrides}
    return Scenario.from_dict(plan)


def sip_request(
    room: str, phone: str, trunk: str, caller_id: str = "", wait: bool = False
) -> api.CreateSIPParticipantRequest:
    return api.CreateSIPParticipantRequest(
        room_name=room,
        sip_trunk_id=trunk,
        sip_number=caller_id,
        sip_call_to=phone,
        wait_until_answered=wait,
    )


def dial_at_once(sim: RunningSimulator, *requests: api.CreateSIPParticipantRequest) -> list[Result]:
    """CreateSIPParticipant for each request, all in flight together, in order of arrival."""

    async def run() -> list[Result]:
        async with api.LiveKitAPI(sim.url, API_KEY, API_SECRET) as lk:

            async def dial(request: api.CreateSIPParticipantRequest) -> Result:
                try:
                    return await lk.sip.create_sip_participant(request)
                except api.ServerError as exc:
                    return exc

            return list(await asyncio.gather(*(dial(r) for r in requests)))

    return asyncio.run(run())


def assert_refused(result: Result) -> None:
    assert isinstance(result, api.SipCallError), result
    assert (result.sip_status_code, result.sip_status) == (503, "Service Unavailable")
    assert (result.code, result.status) == ("unavailable", 503)


def room_names(sim: RunningSimulator) -> list[str]:
    async def run() -> list[str]:
        async with api.LiveKitAPI(sim.url, API_KEY, API_SECRET) as lk:
            return [r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms]

    return asyncio.run(run())


def all_over(sim: RunningSimulator) -> bool:
    return sim.stats().live_calls == 0 and room_names(sim) == []


# --- sip mode: batchctl's CreateSIPParticipant ---


def test_max_cps_refuses_the_excess_of_a_burst_with_503_and_accepts_again_a_second_later(
    db_url: str,
) -> None:
    with run_simulator(db_url, scenario(mode="sip")) as sim:
        limited = [sip_request(f"r{i}", PHONE[i], TWO_CPS, CALLER, wait=True) for i in range(3)]
        free = [sip_request(f"f{i}", PHONE[i], UNLISTED, wait=True) for i in range(3)]
        started = time.monotonic()
        results = dict(
            zip(
                (r.room_name for r in limited + free),
                dial_at_once(sim, *limited, *free),
                strict=True,
            )
        )
        # Whichever arrived third was refused, at once even with wait_until_answered.
        refused = [room for room, r in results.items() if not isinstance(r, api.SIPParticipantInfo)]
        assert len(refused) == 1 and refused[0].startswith("r"), results
        assert_refused(results[refused[0]])

        starts = sim.stats().carrier_starts
        # In order of arrival.
        assert [(s.room, s.accepted) for s in starts if s.trunk_id == TWO_CPS][2] == (
            refused[0],
            False,
        )
        assert sorted((s.room, s.phone, s.trunk_id, s.caller_id) for s in starts) == [
            *((f"f{i}", PHONE[i], UNLISTED, None) for i in range(3)),
            *((f"r{i}", PHONE[i], TWO_CPS, CALLER) for i in range(3)),
        ]
        assert sum(s.accepted for s in starts) == 5
        wait_until(lambda: all_over(sim), what="every call to end and its room to close")

        # A second after the first accepted start the window has room again.
        time.sleep(max(0.0, starts[0].at + 1.0 - time.time()))
        (again,) = dial_at_once(sim, sip_request("r3", PHONE[3], TWO_CPS, CALLER))
        assert isinstance(again, api.SIPParticipantInfo)
        assert time.monotonic() - started < 3

        stats = sim.stats()
        assert [s.accepted for s in stats.carrier_starts if s.trunk_id == TWO_CPS] == [
            True,
            True,
            False,
            True,
        ]
        assert stats.starts_per_window(TWO_CPS) == 2
        assert stats.starts_per_window(UNLISTED) == 3
        assert stats.calls_per_caller_id() == {CALLER: 3}
        # The refused call never became a participant; the others carry their caller ID.
        accepted = {s.room for s in stats.carrier_starts if s.trunk_id == TWO_CPS and s.accepted}
        assert {(p.room, p.caller_id) for p in stats.sip_participants if p.trunk_id == TWO_CPS} == {
            (room, CALLER) for room in accepted
        }
        assert len(accepted) == 3
        assert stats.errors["CreateSIPParticipant"] == {"unavailable": 1}
        wait_until(lambda: all_over(sim))


def test_max_concurrent_refuses_a_call_while_the_trunk_is_full(db_url: str) -> None:
    with run_simulator(db_url, scenario(mode="sip", call_length_s=0.6)) as sim:
        (first,) = dial_at_once(sim, sip_request("c0", PHONE[0], ONE_AT_A_TIME))
        assert isinstance(first, api.SIPParticipantInfo)
        # Refused at once, without wait_until_answered too; another trunk is not affected.
        second, elsewhere = dial_at_once(
            sim,
            sip_request("c1", PHONE[1], ONE_AT_A_TIME),
            sip_request("c2", PHONE[2], UNLISTED),
        )
        assert_refused(second)
        assert isinstance(elsewhere, api.SIPParticipantInfo)
        # The refused call's room closes at once; the accepted ones' when their calls end.
        wait_until(lambda: "c1" not in room_names(sim), what="the refused call's room to close")
        assert sorted(room_names(sim)) == ["c0", "c2"]
        wait_until(lambda: all_over(sim), what="the calls to end")
        (third,) = dial_at_once(sim, sip_request("c3", PHONE[3], ONE_AT_A_TIME))
        assert isinstance(third, api.SIPParticipantInfo)
        assert sorted((s.room, s.accepted) for s in sim.stats().carrier_starts) == [
            ("c0", True),
            ("c1", False),
            ("c2", True),
            ("c3", True),
        ]
        wait_until(lambda: all_over(sim))


@pytest.mark.parametrize("mode", ["sip", "auto"])
def test_a_refused_dial_into_a_dispatch_ends_it_as_a_failed_call_ends(
    db_url: str, mode: str
) -> None:
    """The dispatched agent waiting for its callee leaves, and the room closes. In auto mode
    the agent, joining after the refusal, does not dial: batchctl did."""
    numbers = {PHONE[0]: "busy", PHONE[1]: "busy"}
    plan = scenario(mode=mode, numbers=numbers, join_delay_s=0.5)
    with run_simulator(db_url, plan) as sim:

        async def dispatch(room: str, phone: str) -> None:
            request = api.CreateAgentDispatchRequest(
                agent_name="agent", room=room, metadata=json.dumps({"to_phone": phone})
            )
            async with api.LiveKitAPI(sim.url, API_KEY, API_SECRET) as lk:
                await lk.agent_dispatch.create_dispatch(request)

        for i in range(2):
            asyncio.run(dispatch(f"d{i}", PHONE[i]))
        results = dial_at_once(
            sim,
            sip_request("d0", PHONE[0], SLOW, CALLER, wait=True),
            sip_request("d1", PHONE[1], SLOW, CALLER, wait=True),
        )
        # The first to arrive rang and was busy; the second was refused, 0.5 cps.
        busy, refused = sorted(results, key=lambda r: getattr(r, "sip_status_code", 0))
        assert isinstance(busy, api.SipCallError) and busy.sip_status_code == 486
        assert_refused(refused)
        wait_until(lambda: all_over(sim), what="both calls to end and their rooms to close")
        stats = sim.stats()
        assert [s.accepted for s in stats.carrier_starts] == [True, False]
        assert {s.dialed_by for s in stats.sip_participants} == {"api"}
        assert stats.reports == ()  # in sip mode batchctl reports a failure itself
        assert stats.dispatches_per_room == {"d0": 1, "d1": 1}


# --- agent mode: the agent dials from the dispatch metadata ---


def test_agent_mode_a_refused_call_reports_failed_with_503_and_carrier_refused(
    db_url: str, conn: Any
) -> None:
    sql = SqlApi(conn)
    tenant = sql.create_tenant(max_concurrent_calls=2)
    sql.create_batch(tenant, phones(2))
    claims = sql.claim()
    assert len(claims) == 2
    plan = scenario(mode="agent", call_length_s=0.4)
    with run_simulator(db_url, plan) as sim:

        async def dispatch_all() -> list[api.AgentDispatch]:
            async with api.LiveKitAPI(sim.url, API_KEY, API_SECRET) as lk:
                return [
                    await lk.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(
                            agent_name="agent",
                            room=c.room_name,
                            metadata=json.dumps(
                                {**dispatch_metadata(c, ONE_AT_A_TIME), "caller_id": CALLER},
                                default=str,
                            ),
                        )
                    )
                    for c in claims
                ]

        for claim, created in zip(claims, asyncio.run(dispatch_all()), strict=True):
            sql.mark_dispatched(claim.entry_id, claim.room_name, created.id)

        def reports() -> list[list[str]]:
            return sorted(sim.stats().reports_for(c.room_name) for c in claims)

        # Both agents dial at once; the trunk takes one call.
        wait_until(
            lambda: reports() == [["failed"], ["ringing", "ongoing", "ended"]],
            what="one answered call and one refused",
            details=reports,
        )
        wait_until(lambda: all_over(sim))
        stats = sim.stats()
        refused = next(s for s in stats.carrier_starts if not s.accepted)
        assert [(s.trunk_id, s.caller_id) for s in stats.carrier_starts] == [
            (ONE_AT_A_TIME, CALLER)
        ] * 2
        assert [p.room for p in stats.sip_participants] == [
            s.room for s in stats.carrier_starts if s.accepted
        ]
    row = conn.execute(
        "select status, detail from batchctl.call_logs where id = %s",
        (call_log_id(refused.room),),
    ).fetchone()
    assert row["status"] == "failed"
    assert {k: row["detail"][k] for k in ("sip_status_code", "sip_status", "error")} == {
        "sip_status_code": 503,
        "sip_status": "Service Unavailable",
        "error": "SIP 503 Service Unavailable",
    }
    assert row["detail"]["carrier_refused"] is True


# --- the carrier's rules and the records, without a server ---


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def carrier(trunks: dict[str, Any]) -> tuple[Carrier, Clock, SimStats]:
    clock = Clock()
    stats = SimStats(clock=clock)
    return Carrier(CarrierLimits.from_dict({"trunks": trunks}), stats), clock, stats


def test_fractional_max_cps_spaces_calls_and_any_second_holds_at_most_max_cps() -> None:
    gate, clock, stats = carrier({"half": {"max_cps": 0.5}, "two_and_a_half": {"max_cps": 2.5}})

    def start(trunk: str, at: float) -> bool:
        clock.now = 1_000.0 + at
        return gate.start(trunk, room="r", phone="p", caller_id=None)

    # 0.5: one call every 2 s.
    assert [start("half", t) for t in (0.0, 1.9, 2.0, 3.5, 4.0)] == [True, False, True, False, True]
    # 2.5: two within any second (a third would make more than 2.5).
    starts = (0.0, 0.1, 0.2, 0.99, 1.0, 1.05, 1.15, 1.2)
    assert [start("two_and_a_half", t) for t in starts] == [
        True,
        True,
        False,
        False,
        True,  # 0.0 is a second ago
        False,
        True,  # 0.1 is
        False,
    ]
    snapshot = stats.snapshot()
    assert snapshot.starts_per_window("half") == 1
    assert snapshot.starts_per_window("two_and_a_half") == 2
    assert snapshot.to_json()["carrier_starts"][0] == {
        "room": "r",
        "phone": "p",
        "trunk_id": "half",
        "caller_id": None,
        "accepted": True,
        "at": 1_000.0,
    }


def test_max_concurrent_counts_calls_until_they_finish() -> None:
    gate, _, _ = carrier({"one": {"max_concurrent": 1}})

    def start(trunk: str) -> bool:
        return gate.start(trunk, room="r", phone="p", caller_id=None)

    assert [start("one"), start("one"), start("other"), start("other")] == [True, False, True, True]
    gate.finished("one")
    assert start("one")


def test_starts_per_window_and_calls_per_caller_id() -> None:
    clock = Clock()
    stats = SimStats(clock=clock)
    for at, trunk, caller, accepted in [
        (0.0, "a", "+1", True),
        (0.5, "a", "+2", True),
        (0.99, "a", "+1", True),
        (1.0, "a", "+1", True),  # not in [0, 1), which holds 3
        (1.2, "a", None, True),  # [0.5, 1.5) holds 4
        (1.3, "a", "+2", False),  # refused: not counted
        (1.4, "b", "+1", True),  # another trunk
        (2.5, "a", "+2", True),  # [1.5, 2.5) ends before it
    ]:
        stats.carrier_start(CarrierStart("r", "p", trunk, caller, accepted, 1_000.0 + at))
    snapshot = stats.snapshot()
    assert snapshot.starts_per_window("a") == 4
    assert snapshot.starts_per_window("b") == 1
    assert snapshot.starts_per_window("none") == 0
    assert snapshot.calls_per_caller_id() == {"+1": 4, "+2": 2}


def test_the_stats_json_has_the_carrier_starts(db_url: str) -> None:
    async def fetch(url: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return await resp.json()

    with run_simulator(db_url, scenario(mode="sip")) as sim:
        dial_at_once(sim, sip_request("j0", PHONE[0], UNLISTED, CALLER))
        (start,) = asyncio.run(fetch(f"{sim.url}/sim/stats"))["carrier_starts"]
        assert {k: v for k, v in start.items() if k != "at"} == {
            "room": "j0",
            "phone": PHONE[0],
            "trunk_id": UNLISTED,
            "caller_id": CALLER,
            "accepted": True,
        }
        wait_until(lambda: all_over(sim))


# --- the scenario ---


def test_the_carrier_key_is_optional_and_parsed() -> None:
    assert Scenario.from_dict({}).carrier == CarrierLimits()
    limits = scenario().carrier.trunks
    assert (limits[TWO_CPS].max_cps, limits[TWO_CPS].max_concurrent) == (2.0, None)
    assert (limits[SLOW].max_cps, limits[SLOW].max_concurrent) == (0.5, 5)
    assert Scenario.from_dict({"carrier": {"_about": "x", "trunks": {"_x": 1}}}).carrier == (
        CarrierLimits()
    )


@pytest.mark.parametrize(
    ("carrier", "message"),
    [
        ([], "carrier: expected a JSON object"),
        ({"trunk": {}}, "carrier: unknown key 'trunk'"),
        ({"trunks": [1]}, "carrier.trunks: expected an object"),
        ({"trunks": {"T": 2}}, "carrier.trunks.T: expected a JSON object"),
        ({"trunks": {"T": {"cps": 2}}}, "carrier.trunks.T: unknown key 'cps'"),
        ({"trunks": {"T": {"max_cps": 0}}}, "T.max_cps: expected a number > 0"),
        ({"trunks": {"T": {"max_cps": -1}}}, "T.max_cps: expected a number"),
        ({"trunks": {"T": {"max_cps": "2"}}}, "T.max_cps: expected a number"),
        ({"trunks": {"T": {"max_cps": True}}}, "T.max_cps: expected a number"),
        ({"trunks": {"T": {"max_concurrent": 0}}}, "T.max_concurrent: expected an integer >= 1"),
        ({"trunks": {"T": {"max_concurrent": 1.5}}}, "T.max_concurrent: expected an integer"),
    ],
)  # fmt: skip
def test_a_bad_carrier_names_the_key(carrier: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        Scenario.from_dict({"carrier": carrier})

"""The LiveKit simulator (batchctl.sim), driven through the real livekit-api client, with its
agents reporting into a real database set up through the SQL API (tests/helpers/sqlapi.py).

Each test plays the daemon's part by hand: claim, CreateDispatch with the daemon's metadata,
mark_dispatched; then asserts what the simulator's agents wrote to the call logs and entries.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from click.testing import CliRunner
from livekit import api

from batchctl.cli import cli
from batchctl.client.aio import AsyncClient
from batchctl.config import LiveKitCredentials
from batchctl.daemon.dispatcher import dispatch_metadata
from batchctl.database import async_pool
from batchctl.identifiers import call_log_id
from batchctl.sim import Scenario, ScenarioError
from batchctl.webhook import PATH, Webhooks, serve
from pgtools import one_row
from polling import wait_until
from ports import free_port
from simulator import API_KEY, API_SECRET, RunningSimulator, run_simulator
from sqlapi import Claim, SqlApi, phones

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
FAST = {"join_delay_s": 0.01, "ring_time_s": [0.02, 0.04], "call_length_s": [0.05, 0.08]}
BUSY, NO_ANSWER, DECLINED, ANSWERED = (p["to_phone"] for p in phones(4))


def scenario(**overrides: Any) -> Scenario:
    return Scenario.from_dict({**FAST, **overrides})


def livekit(
    url: str,
    use: Callable[[api.LiveKitAPI], Awaitable[T]],
    *,
    secret: str = API_SECRET,
    token: str | None = None,
) -> T:
    """One call through the real client, as the daemon makes it."""

    async def run() -> T:
        if token:
            client = api.LiveKitAPI(url, token=token)
        else:
            client = api.LiveKitAPI(url, api_key=API_KEY, api_secret=secret)
        async with client as lk:
            return await use(lk)

    return asyncio.run(run())


def participant_kinds(url: str, room: str) -> list[int]:
    request = api.ListParticipantsRequest(room=room)
    reply = livekit(url, lambda lk: lk.room.list_participants(request))
    return [p.kind for p in reply.participants]


def room_names(url: str) -> list[str]:
    return [
        r.name for r in livekit(url, lambda lk: lk.room.list_rooms(api.ListRoomsRequest())).rooms
    ]


def delete_room(url: str, room: str) -> api.DeleteRoomResponse:
    request = api.DeleteRoomRequest(room=room)
    return livekit(url, lambda lk: lk.room.delete_room(request))


def metadata(claim: Claim) -> str:
    """The dispatch metadata batchctl's daemon sends (the contract with the agent)."""
    return json.dumps(dispatch_metadata(claim, "ST_test"), default=str)


def create_dispatch(sim: RunningSimulator, claim: Claim, **kw: Any) -> api.AgentDispatch:
    request = api.CreateAgentDispatchRequest(
        agent_name="test-agent", room=claim.room_name, metadata=metadata(claim)
    )
    return livekit(sim.url, lambda lk: lk.agent_dispatch.create_dispatch(request), **kw)


def dispatch(sim: RunningSimulator, sql: SqlApi, claim: Claim) -> None:
    """The daemon's order: LiveKit first, then the database."""
    created = create_dispatch(sim, claim)
    sql.mark_dispatched(claim.entry_id, claim.room_name, created.id)


def calls(sql: SqlApi) -> dict[str, dict[str, Any]]:
    """Per phone: its entry's and its current call's status and detail."""
    rows = sql.conn.execute(
        """select e.to_phone, e.status as entry, c.status as call, c.detail
             from batchctl.batch_entries e
             left join batchctl.call_logs c on c.id = e.call_log_id"""
    ).fetchall()
    return {r["to_phone"]: r for r in rows}


def all_terminal(sql: SqlApi) -> bool:
    return all(
        c["entry"] in ("completed", "failed", "declined", "cancelled") for c in calls(sql).values()
    )


@pytest.fixture
def sql(conn: Any) -> SqlApi:
    return SqlApi(conn)


def claims_for(sql: SqlApi, n: int, cap: int | None = None) -> list[Claim]:
    tenant = sql.create_tenant(max_concurrent_calls=cap or n)
    sql.create_batch(tenant, phones(n))
    return sorted(sql.claim(), key=lambda c: c.to_phone)


# --- Twirp and authentication ---


def test_bad_secret_is_unauthenticated_and_nothing_is_recorded(db_url: str, sql: SqlApi) -> None:
    (claim,) = claims_for(sql, 1)
    with run_simulator(db_url, scenario()) as sim:
        with pytest.raises(api.ServerError) as caught:
            create_dispatch(sim, claim, secret="not-the-secret-" + "x" * 32)
        assert (caught.value.code, caught.value.status) == ("unauthenticated", 401)
        stats = sim.stats()
        assert stats.dispatches == () and stats.live_calls == 0
        assert stats.errors == {"CreateDispatch": {"unauthenticated": 1}}
        assert room_names(sim.url) == []


def test_a_missing_grant_is_permission_denied(db_url: str) -> None:
    def token(grants: api.VideoGrants) -> str:
        return api.AccessToken(API_KEY, API_SECRET).with_grants(grants).to_jwt()

    request = api.CreateAgentDispatchRequest(agent_name="a", room="room-1", metadata="{}")
    with run_simulator(db_url, scenario()) as sim:
        lister = token(api.VideoGrants(room_list=True))
        other_room = token(api.VideoGrants(room_admin=True, room="room-2"))
        for grants in (lister, other_room):
            with pytest.raises(api.ServerError) as caught:
                livekit(
                    sim.url, lambda lk: lk.agent_dispatch.create_dispatch(request), token=grants
                )
            assert (caught.value.code, caught.value.status) == ("permission_denied", 403)
        with pytest.raises(api.ServerError, match="permission_denied"):
            livekit(
                sim.url,
                lambda lk: lk.room.delete_room(api.DeleteRoomRequest(room="x")),
                token=lister,
            )
        # The grant the token does carry works.
        listed = livekit(
            sim.url, lambda lk: lk.room.list_rooms(api.ListRoomsRequest()), token=lister
        )
        assert listed.rooms == []
        assert sim.stats().dispatches == ()


def test_wire_errors_are_twirp_json(db_url: str) -> None:
    async def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    protobuf = {"Content-Type": "application/protobuf"}
    with run_simulator(db_url, scenario()) as sim:
        base = f"{sim.url}/twirp/livekit"
        status, body = asyncio.run(post(f"{base}.RoomService/NoSuchMethod", protobuf))
        assert (status, body["code"]) == (404, "bad_route")
        status, body = asyncio.run(post(f"{base}.RoomService/ListRooms", protobuf))
        assert (status, body["code"]) == (401, "unauthenticated")


# --- agent mode: the agent dials and reports ---


def test_agent_mode_outcomes_follow_the_scenario_into_the_database(
    db_url: str, sql: SqlApi
) -> None:
    numbers = {BUSY: "busy", NO_ANSWER: "no_answer", DECLINED: "declined", ANSWERED: "ended"}
    with run_simulator(db_url, scenario(mode="agent", numbers=numbers)) as sim:
        for claim in claims_for(sql, 4):
            assert (
                sim.scenario.outcome_for(claim.to_phone, claim.attempt) == numbers[claim.to_phone]
            )
            dispatch(sim, sql, claim)
        wait_until(lambda: all_terminal(sql), what="every call to end")
        result = calls(sql)
        assert {p: (c["entry"], c["call"]) for p, c in result.items()} == {
            BUSY: ("declined", "busy"),
            NO_ANSWER: ("declined", "no_answer"),
            DECLINED: ("declined", "declined"),
            ANSWERED: ("completed", "ended"),
        }
        assert result[BUSY]["detail"]["sip_status_code"] == 486
        answered = result[ANSWERED]["detail"]
        assert "Talked with" in answered["summary"] and answered["duration_seconds"] > 0
        assert answered["analysis"]["outcome"] == "ended"
        stats = sim.stats()
        rooms = {d.phone: d.room for d in stats.dispatches}
        assert stats.reports_for(rooms[ANSWERED]) == ["ringing", "ongoing", "ended"]
        assert stats.reports_for(rooms[BUSY]) == ["ringing", "busy"]
        assert {s.dialed_by for s in stats.sip_participants} == {"agent"}
        wait_until(lambda: room_names(sim.url) == [])
        assert sim.stats().live_calls == 0


def test_a_report_before_mark_dispatched_is_retried_until_the_call_log_exists(
    db_url: str, sql: SqlApi
) -> None:
    (claim,) = claims_for(sql, 1)
    with run_simulator(db_url, scenario(numbers={claim.to_phone: "ended"})) as sim:
        created = create_dispatch(sim, claim)
        time.sleep(0.3)  # the agent joined long ago, but its call log does not exist yet
        assert sim.stats().reports == ()
        sql.mark_dispatched(claim.entry_id, claim.room_name, created.id)
        wait_until(lambda: all_terminal(sql))
        assert sim.stats().reports_for(claim.room_name) == ["ringing", "ongoing", "ended"]
        assert "report_call_status" not in sim.stats().errors
        assert calls(sql)[claim.to_phone]["entry"] == "completed"


def test_an_agent_gives_up_when_its_call_log_never_appears(db_url: str, sql: SqlApi) -> None:
    (claim,) = claims_for(sql, 1)
    with run_simulator(db_url, scenario(report_give_up_s=0.2)) as sim:
        create_dispatch(sim, claim)
        wait_until(lambda: sim.stats().errors.get("report_call_status") == {"BC002": 1})
        wait_until(lambda: sim.stats().live_calls == 0, what="the agent to hang up")
        assert room_names(sim.url) == []
    assert calls(sql)[claim.to_phone]["entry"] == "running"  # the daemon's lease decides


def test_reports_survive_lost_database_connections(db_url: str, sql: SqlApi) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(numbers={claim.to_phone: "ended"}, call_length_s=0.5)
    with run_simulator(db_url, plan) as sim:
        dispatch(sim, sql, claim)
        wait_until(lambda: calls(sql)[claim.to_phone]["call"] == "ongoing")
        killed = one_row(
            sql.conn,
            """select count(*) filter (where pg_terminate_backend(pid)) as n
                 from pg_stat_activity
                where application_name = 'batchctl-sim' and datname = current_database()""",
        )
        assert killed["n"] >= 1
        wait_until(lambda: all_terminal(sql), what="the final report after reconnecting")
        assert calls(sql)[claim.to_phone]["call"] == "ended"


def test_delete_room_ends_a_live_call_and_its_agent_reports_nothing_more(
    db_url: str, sql: SqlApi
) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(numbers={claim.to_phone: "ended"}, call_length_s=30)
    with run_simulator(db_url, plan) as sim:
        dispatch(sim, sql, claim)
        wait_until(lambda: calls(sql)[claim.to_phone]["call"] == "ongoing")
        assert sim.stats().live_calls == 1
        delete = api.DeleteRoomRequest(room=claim.room_name)
        livekit(sim.url, lambda lk: lk.room.delete_room(delete))
        assert sim.stats().live_calls == 0, "not live from the moment DeleteRoom answers"
        time.sleep(0.2)
        assert sim.stats().reports_for(claim.room_name) == ["ringing", "ongoing"]
        assert calls(sql)[claim.to_phone]["call"] == "ongoing"  # batchctl records the hang-up
        for room in (claim.room_name, "no-such-room"):
            with pytest.raises(api.ServerError) as caught:
                delete_room(sim.url, room)
            assert (caught.value.code, caught.value.status) == ("not_found", 404)
        assert [(d.room, d.existed) for d in sim.stats().room_deletions] == [
            (claim.room_name, True),
            (claim.room_name, False),
            ("no-such-room", False),
        ]


def test_list_dispatch_and_list_rooms(db_url: str) -> None:
    room = "batchctl-list-1"
    request = api.CreateAgentDispatchRequest(
        agent_name="agent-x", room=room, metadata=json.dumps({"to_phone": BUSY})
    )
    # sip mode: the agent waits for batchctl to dial, so the room stays put.
    with run_simulator(db_url, scenario(mode="sip")) as sim:
        created = livekit(sim.url, lambda lk: lk.agent_dispatch.create_dispatch(request))
        (listed,) = livekit(sim.url, lambda lk: lk.agent_dispatch.list_dispatch(room))
        assert (listed.id, listed.agent_name, listed.metadata) == (
            created.id,
            "agent-x",
            request.metadata,
        )
        rooms = livekit(
            sim.url, lambda lk: lk.room.list_rooms(api.ListRoomsRequest(names=[room, "x"]))
        )
        assert [r.name for r in rooms.rooms] == [room]
        # The agent joins the room; nobody has dialled the callee yet.
        wait_until(lambda: participant_kinds(sim.url, room) == [api.ParticipantInfo.Kind.AGENT])
        # As a self-hosted LiveKit answers for a room that does not exist (dispatch_service.py).
        with pytest.raises(api.ServerError) as caught:
            livekit(sim.url, lambda lk: lk.agent_dispatch.list_dispatch("no-such-room"))
        assert caught.value.code == "unavailable"
        livekit(sim.url, lambda lk: lk.agent_dispatch.delete_dispatch(created.id, room))
        # Its agent left, the room emptied and closed.
        wait_until(lambda: room not in room_names(sim.url))
        made = livekit(sim.url, lambda lk: lk.room.create_room(api.CreateRoomRequest(name="made")))
        assert made.name in room_names(sim.url)
    # As LiveKit Cloud answers.
    with run_simulator(db_url, scenario(list_dispatch_missing_room="empty")) as sim:
        assert livekit(sim.url, lambda lk: lk.agent_dispatch.list_dispatch("no-such-room")) == []


# --- sip mode: batchctl dials ---


def test_sip_mode_create_sip_participant_answers_or_raises_the_sip_status(
    db_url: str, sql: SqlApi
) -> None:
    numbers = {BUSY: "busy", NO_ANSWER: "no_answer", DECLINED: "declined", ANSWERED: "ended"}
    plan = scenario(mode="sip", numbers=numbers, call_length_s=0.3)
    with run_simulator(db_url, plan) as sim:
        claims = claims_for(sql, 4)
        for claim in claims:
            dispatch(sim, sql, claim)

        async def dial(lk: api.LiveKitAPI, claim: Claim) -> tuple[float, Any]:
            request = api.CreateSIPParticipantRequest(
                room_name=claim.room_name,
                sip_trunk_id="ST_test",
                sip_call_to=claim.to_phone,
                participant_identity=f"callee-{claim.to_phone}",
                wait_until_answered=True,
            )
            started = time.monotonic()
            try:
                result: Any = await lk.sip.create_sip_participant(request)
            except api.ServerError as exc:
                result = exc
            return time.monotonic() - started, result

        async def dial_all(lk: api.LiveKitAPI) -> list[tuple[float, Any]]:
            return await asyncio.gather(*(dial(lk, c) for c in claims))

        results = dict(zip((c.to_phone for c in claims), livekit(sim.url, dial_all), strict=True))
        elapsed, answered = results[ANSWERED]
        assert isinstance(answered, api.SIPParticipantInfo)
        assert answered.participant_identity == f"callee-{ANSWERED}"
        assert elapsed >= sim.scenario.plan_for(ANSWERED, 1).ring_time_s
        answered_room = next(c.room_name for c in claims if c.to_phone == ANSWERED)
        assert api.ParticipantInfo.Kind.SIP in participant_kinds(sim.url, answered_room)
        expected = {BUSY: (486, "resource_exhausted"), NO_ANSWER: (408, "deadline_exceeded")}
        expected[DECLINED] = (603, "permission_denied")
        for phone, (sip_code, code) in expected.items():
            error = results[phone][1]
            assert isinstance(error, api.SipCallError), error
            assert (error.sip_status_code, error.code) == (sip_code, code)

        # The daemon reports what it learnt; the agent reports only the end of the answer.
        by_phone = {c.to_phone: call_log_id(c.room_name) for c in claims}
        sql.report(by_phone[ANSWERED], "ringing")
        sql.report(by_phone[ANSWERED], "ongoing")
        for phone in expected:
            sql.report(by_phone[phone], numbers[phone])
        wait_until(lambda: all_terminal(sql))
        assert calls(sql)[ANSWERED]["call"] == "ended"
        assert "summary" in calls(sql)[ANSWERED]["detail"]
        stats = sim.stats()
        assert [stats.reports_for(c.room_name) for c in claims] == [[], [], [], ["ended"]]
        assert len(stats.sip_participants) == 4
        assert {s.dialed_by for s in stats.sip_participants} == {"api"}


def test_delete_room_while_ringing_ends_the_sip_dial_with_487(db_url: str, sql: SqlApi) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(mode="sip", numbers={claim.to_phone: "ended"}, ring_time_s=5)
    request = api.CreateSIPParticipantRequest(
        room_name=claim.room_name,
        sip_trunk_id="ST_test",
        sip_call_to=claim.to_phone,
        wait_until_answered=True,
    )
    delete = api.DeleteRoomRequest(room=claim.room_name)

    async def dial_then_hang_up(lk: api.LiveKitAPI) -> BaseException | None:
        dialling = asyncio.create_task(lk.sip.create_sip_participant(request))
        await asyncio.sleep(0.1)
        await lk.room.delete_room(delete)
        try:
            await dialling
        except api.SipCallError as exc:
            return exc
        return None

    with run_simulator(db_url, plan) as sim:
        dispatch(sim, sql, claim)
        error = livekit(sim.url, dial_then_hang_up)
        assert isinstance(error, api.SipCallError)
        assert (error.sip_status_code, error.code) == (487, "aborted")
        assert sim.stats().live_calls == 0 and sim.stats().reports == ()


# --- LiveKit faults ---


def test_create_dispatch_faults_503_and_latency(db_url: str, sql: SqlApi) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(mode="sip", dispatch_faults={"fail_first": 2, "latency_s": 0.1})
    with run_simulator(db_url, plan) as sim:
        for _ in range(2):
            with pytest.raises(api.ServerError) as caught:
                create_dispatch(sim, claim)
            assert (caught.value.code, caught.value.status) == ("unavailable", 503)
        started = time.monotonic()
        create_dispatch(sim, claim)
        assert time.monotonic() - started >= 0.1
        stats = sim.stats()
        assert stats.dispatches_per_room == {claim.room_name: 1}
        assert stats.errors["CreateDispatch"] == {"unavailable": 2}
        assert stats.requests["CreateDispatch"] == 3


def test_a_stalled_create_dispatch_times_the_caller_out_but_the_dispatch_exists(
    db_url: str, sql: SqlApi
) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(mode="sip", dispatch_faults={"stall_rate": 1, "stall_s": 0.6})
    request = api.CreateAgentDispatchRequest(
        agent_name="test-agent", room=claim.room_name, metadata=metadata(claim)
    )
    with run_simulator(db_url, plan) as sim:
        # livekit-api 1.2.2 sends each request with timeout=None, which switches off the
        # session's timeout (LiveKitAPI(timeout=...)): the caller has to bound the call itself.
        with pytest.raises(TimeoutError):
            livekit(
                sim.url,
                lambda lk: asyncio.wait_for(lk.agent_dispatch.create_dispatch(request), 0.2),
            )
        # The ambiguous case the daemon must handle: look before dialling again.
        found = livekit(sim.url, lambda lk: lk.agent_dispatch.list_dispatch(claim.room_name))
        assert [d.room for d in found] == [claim.room_name]


# --- webhooks ---


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, str]] = []  # (body, authorization)

    def events(self, receiver: api.WebhookReceiver) -> list[Any]:
        with self.lock:
            return [receiver.receive(body, auth) for body, auth in self.items]


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            with received.lock:
                received.items.append((body, self.headers["Authorization"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhook", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhooks_are_signed_as_livekit_signs_them_and_tell_a_crashed_agents_outcome(
    db_url: str, sql: SqlApi, webhook_receiver: tuple[str, Received]
) -> None:
    url, received = webhook_receiver
    crashed = NO_ANSWER
    claims = claims_for(sql, 2)  # the numbers BUSY and NO_ANSWER
    numbers = {BUSY: "busy", crashed: "crash"}
    receiver = api.WebhookReceiver(api.TokenVerifier(API_KEY, API_SECRET))

    def events(name: str) -> list[Any]:
        return [e for e in received.events(receiver) if e.event == name]

    with run_simulator(db_url, scenario(mode="agent", numbers=numbers), webhook_url=url) as sim:
        for claim in claims:
            dispatch(sim, sql, claim)
        wait_until(lambda: len(events("room_finished")) == 2, what="both rooms to finish")
        wait_until(lambda: sim.stats().webhooks_sent == len(received.items))
        assert sim.stats().webhooks_failed == 0

    left = {
        e.participant.attributes["sip.phoneNumber"]: e.participant
        for e in events("participant_left")
    }
    assert left[BUSY].disconnect_reason == api.DisconnectReason.USER_REJECTED
    assert left[BUSY].attributes["sip.callStatus"] == "dialing"
    # The crashed agent never reported the end; the webhook says the call was answered and
    # ended normally.
    assert left[crashed].disconnect_reason == api.DisconnectReason.CLIENT_INITIATED
    assert left[crashed].attributes["sip.callStatus"] == "active"
    assert left[crashed].kind == api.ParticipantInfo.Kind.SIP
    assert calls(sql)[crashed]["call"] == "ongoing"
    assert calls(sql)[BUSY]["call"] == "busy"
    assert [e.participant.attributes["sip.callStatus"] for e in events("participant_joined")] == [
        "dialing",
        "dialing",
    ]

    body, auth = received.items[0]
    with pytest.raises(Exception, match="hash mismatch"):
        receiver.receive(body.replace('"event"', '"event" ', 1), auth)
    forged = api.WebhookReceiver(api.TokenVerifier(API_KEY, "another-secret-" + "y" * 32))
    with pytest.raises(Exception, match="Signature"):
        forged.receive(body, auth)


@contextmanager
def batchctl_webhook_endpoint(db_url: str) -> Iterator[str]:
    """batchctl's own webhook receiver (batchctl.webhook), served from a background loop."""
    port = free_port()
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    async def serve_until_stopped() -> None:
        async with async_pool(db_url, "test-webhook", max_size=2) as pool:
            credentials = LiveKitCredentials(API_KEY, API_SECRET)
            webhooks = Webhooks(AsyncClient(pool), credentials, grace=0)
            await serve(webhooks, "127.0.0.1", port, stopping)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve_until_stopped(),))
    thread.start()
    try:
        wait_until(lambda: _listening(port), what="the webhook endpoint")
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_batchctl_learns_a_crashed_agents_outcome_from_the_simulators_webhooks(
    db_url: str, sql: SqlApi
) -> None:
    (claim,) = claims_for(sql, 1)
    plan = scenario(mode="agent", numbers={claim.to_phone: "crash"}, call_length_s=0.1)
    with (
        batchctl_webhook_endpoint(db_url) as url,
        run_simulator(db_url, plan, webhook_url=url) as sim,
    ):
        dispatch(sim, sql, claim)
        wait_until(lambda: all_terminal(sql), what="the webhook to end the call")
        assert sim.stats().reports_for(claim.room_name) == ["ringing", "ongoing"]
    call = calls(sql)[claim.to_phone]
    assert (call["entry"], call["call"]) == ("completed", "ended")
    assert call["detail"]["ended_by"].startswith("callee left")


# --- records ---


def test_stats_count_peaks_per_tenant_and_phone_and_dispatches_per_room(
    db_url: str, sql: SqlApi
) -> None:
    big = sql.create_tenant("big", max_concurrent_calls=3)
    small = sql.create_tenant("small", max_concurrent_calls=1)
    sql.create_batch(big, phones(3))
    sql.create_batch(small, phones(1, start=10))
    with run_simulator(db_url, scenario(mode="agent", call_length_s=0.3)) as sim:
        claims = sql.claim()
        assert len(claims) == 4
        for claim in claims:
            dispatch(sim, sql, claim)
        wait_until(lambda: all_terminal(sql) and sim.stats().live_calls == 0, timeout=10)
        stats = sim.stats()
        assert stats.peak_per_tenant == {str(big): 3, str(small): 1}
        assert set(stats.dispatches_per_room.values()) == {1}
        assert set(stats.peak_per_phone.values()) == {1}

        # A daemon bug that dials one attempt twice shows in the records.
        extra = sql.create_batch(small, phones(1, start=20))
        (twice,) = [c for c in sql.claim() if c.batch_id == extra]
        create_dispatch(sim, twice)
        dispatch(sim, sql, twice)
        stats = sim.stats()
        assert stats.dispatches_per_room[twice.room_name] == 2
        assert stats.peak_per_phone[twice.to_phone] == 2
        wait_until(lambda: sim.stats().live_calls == 0)

        async def fetch(url: str) -> dict[str, Any]:
            async with aiohttp.ClientSession() as session, session.get(url) as resp:
                return await resp.json()

        served = asyncio.run(fetch(f"{sim.url}/sim/stats"))
        assert served["dispatches_per_room"] == sim.stats().dispatches_per_room
        assert served["peak_per_tenant"] == {str(big): 3, str(small): 2}


# --- the scenario ---


def test_outcomes_are_deterministic_by_seed_and_follow_overrides() -> None:
    numbers = [p["to_phone"] for p in phones(200)]
    first = Scenario.from_dict({"seed": 7})
    again = Scenario.from_dict({"seed": 7})
    other = Scenario.from_dict({"seed": 8})
    outcomes = [first.outcome_for(n, 1) for n in numbers]
    assert outcomes == [again.outcome_for(n, 1) for n in numbers]
    assert outcomes != [other.outcome_for(n, 1) for n in numbers]
    assert 0.45 < outcomes.count("ended") / len(numbers) < 0.75  # default weight 0.6
    assert {Scenario.from_dict({"outcomes": {"busy": 1}}).outcome_for(n, 1) for n in numbers} == {
        "busy"
    }
    planned = Scenario.from_dict({"numbers": {BUSY: ["no_answer", "crash"]}})
    assert [planned.outcome_for(BUSY, a) for a in (1, 2, 3)] == ["no_answer", "ended", "ended"]
    assert [planned.plan_for(BUSY, a).agent_crashes for a in (1, 2)] == [False, True]
    crashing = Scenario.from_dict({"outcomes": {"ended": 1}, "agent_crash_rate": 1})
    assert all(crashing.plan_for(n, 1).agent_crashes for n in numbers[:20])
    timed = Scenario.from_dict({"ring_time_s": [1, 2], "join_delay_s": 0.5})
    ring = timed.plan_for(BUSY, 1).ring_time_s
    assert 1 <= ring <= 2 and ring == timed.plan_for(BUSY, 1).ring_time_s
    assert timed.plan_for(BUSY, 1).join_delay_s == 0.5


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"sede": 1}, "unknown key 'sede'"),
        ({"outcomes": {"answered": 1}}, "outcomes: unknown key 'answered'"),
        ({"outcomes": {"busy": 0}}, "outcomes: at least one weight"),
        ({"numbers": {BUSY: ["busy", "maybe"]}}, f"numbers.{BUSY}"),
        ({"ring_time_s": [2, 1]}, "ring_time_s: low 2 is above high 1"),
        ({"call_length_s": "long"}, "call_length_s: expected a number"),
        ({"agent_crash_rate": 1.5}, "agent_crash_rate: expected a number from 0 to 1"),
        ({"mode": "both"}, "mode: expected one of auto, agent, sip"),
        ({"dispatch_faults": {"fail_first": -1}}, "dispatch_faults.fail_first"),
        ({"dispatch_faults": {"latency": 1}}, "dispatch_faults: unknown key 'latency'"),
        ({"webhook_url": "localhost:9"}, "webhook_url"),
        ({"seed": True}, "seed: expected an integer"),
        ({"list_dispatch_missing_room": 404}, "list_dispatch_missing_room: expected one of"),
        ([], "scenario: expected a JSON object"),
    ],
)
def test_a_bad_scenario_names_the_key(doc: Any, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        Scenario.from_dict(doc)


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"seed": ' * 10_000 + "1" + "}" * 10_000, "nested too deep to read"),
     ('{"seed": 1', "Expecting ',' delimiter")],
)  # fmt: skip
def test_a_scenario_file_that_cannot_be_read_names_itself(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
        Scenario.load(path)


def test_the_example_scenario_loads() -> None:
    example = Scenario.load(REPO / "examples" / "scenario.json")
    assert example.webhook_url is None and example.mode == "auto"


# --- the command ---


def test_batchctl_sim_serves_until_sigterm(db_url: str) -> None:
    env = {**os.environ, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET}
    command = [sys.executable, "-m", "batchctl", "--database-url", db_url, "sim", "--port", "0"]
    short = CliRunner().invoke(cli, command[3:], env={**env, "LIVEKIT_API_SECRET": "short"})
    assert short.exit_code == 2 and "at least 32 bytes" in short.output

    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(
            r"LiveKit SIMULATOR \(not a real LiveKit server\) listening on (http://\S+)\n", line
        )
        assert match, line
        assert room_names(match.group(1)) == []
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=10)
        assert process.returncode == 0, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

"""batchctl.webhook: LiveKit's signed webhooks become call reports; anything unsigned is refused
and writes nothing. Events are built with livekit's own protobuf classes and signed as LiveKit
signs them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToJson
from livekit import api as lk

from batchctl.client.aio import AsyncClient
from batchctl.config import LiveKitCredentials
from batchctl.database import async_pool
from batchctl.webhook import PATH, Webhooks, serve
from pgtools import one_row
from ports import free_port
from sqlapi import SqlApi, phones

CREDENTIALS = LiveKitCredentials("webhook-key", "webhook-secret-of-at-least-32-bytes!")


def signed(body: str, credentials: LiveKitCredentials = CREDENTIALS) -> str:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return lk.AccessToken(credentials.api_key, credentials.api_secret).with_sha256(digest).to_jwt()


def sip_event(event: str, room: str, **participant: Any) -> str:
    return MessageToJson(
        lk.WebhookEvent(
            event=event,
            room=lk.Room(name=room),
            participant=lk.ParticipantInfo(
                identity="callee", kind=lk.ParticipantInfo.Kind.SIP, **participant
            ),
        )
    )


def room_finished(room: str) -> str:
    return MessageToJson(lk.WebhookEvent(event="room_finished", room=lk.Room(name=room)))


def post_all(
    db_url: str,
    requests: list[tuple[str, str]],
    grace: float = 0.0,
    meanwhile: Callable[[], object] = lambda: None,
) -> list[int]:
    """Serves the webhook endpoint, POSTs (body, Authorization) pairs in order, calls
    ``meanwhile`` (in a thread), and stops the server after ``grace``; returns the statuses."""

    async def run() -> list[int]:
        port = free_port()
        stopping = asyncio.Event()
        async with async_pool(db_url, "test-webhook", max_size=2) as pool:
            webhooks = Webhooks(AsyncClient(pool), CREDENTIALS, grace=grace)
            server = asyncio.create_task(serve(webhooks, "127.0.0.1", port, stopping))
            statuses = []
            async with aiohttp.ClientSession() as http:
                for body, auth in requests:
                    for _ in range(100):  # until the server listens
                        try:
                            async with http.post(
                                f"http://127.0.0.1:{port}{PATH}",
                                data=body,
                                headers={"Authorization": auth},
                            ) as reply:
                                statuses.append(reply.status)
                                break
                        except aiohttp.ClientConnectorError:
                            await asyncio.sleep(0.02)
            await asyncio.to_thread(meanwhile)
            await asyncio.sleep(grace)
            stopping.set()
            await server
        return statuses

    return asyncio.run(run())


def live_calls(api: SqlApi, n: int) -> list[tuple[Any, str]]:
    tenant = api.create_tenant(max_concurrent_calls=n)
    api.create_batch(tenant, phones(n))
    claims = api.claim()
    return [(api.mark_dispatched(c.entry_id, c.room_name), c.room_name) for c in claims]


def statuses(api: SqlApi) -> dict[Any, tuple[str, str]]:
    rows = api.conn.execute(
        "select c.id, c.status::text as call, e.status::text as entry"
        " from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id"
    ).fetchall()
    return {r["id"]: (r["call"], r["entry"]) for r in rows}


def test_signed_events_become_call_reports(db_url: str, api: SqlApi) -> None:
    (answered, room_a), (rejected, room_r), (unanswered, room_u) = live_calls(api, 3)
    events = [
        sip_event("participant_joined", room_a, attributes={"sip.callStatus": "active"}),
        sip_event("participant_left", room_r, disconnect_reason=lk.DisconnectReason.USER_REJECTED),
        room_finished(room_a),
        room_finished(room_u),
        room_finished("some-other-room"),  # not batchctl's: accepted and ignored
    ]
    assert post_all(db_url, [(body, signed(body)) for body in events]) == [200] * 5
    assert statuses(api) == {
        answered: ("ended", "completed"),
        rejected: ("declined", "declined"),
        unanswered: ("failed", "failed"),
    }


def test_forged_or_tampered_webhooks_are_refused_and_change_nothing(
    db_url: str, api: SqlApi
) -> None:
    ((call, room),) = live_calls(api, 1)
    body = room_finished(room)
    forged = signed(body, LiveKitCredentials("webhook-key", "another-secret-of-32-bytes-or-more"))
    tampered = signed(sip_event("participant_joined", room))
    before = statuses(api)
    assert post_all(db_url, [(body, forged), (body, tampered), (body, "")]) == [401] * 3
    assert statuses(api) == before == {call: ("in_queue", "dispatched")}


def test_the_agents_own_final_report_within_the_grace_period_wins(db_url: str, api: SqlApi) -> None:
    """LiveKit reports the callee leaving before the agent reports the call's end and summary:
    the agent's richer report is the one kept."""
    ((call, room),) = live_calls(api, 1)
    api.report(call, "ongoing")
    left = sip_event(
        "participant_left", room, disconnect_reason=lk.DisconnectReason.CLIENT_INITIATED
    )
    summary = {"summary": "booked a demo", "analysis": {"interest": "high"}}
    statuses_ = post_all(
        db_url,
        [(left, signed(left))],
        grace=0.5,
        meanwhile=lambda: api.report(call, "ended", summary),
    )
    assert statuses_ == [200]
    row = one_row(api.conn, "select status::text, detail from batchctl.call_logs")
    assert (row["status"], row["detail"]["summary"]) == ("ended", "booked a demo")
    ignored = one_row(api.conn, "select count(*) as n from batchctl.events where ignored")
    assert ignored["n"] == 1, "the webhook's late report was recorded as ignored"

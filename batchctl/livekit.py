"""Every call batchctl makes to LiveKit, through the official ``livekit-api`` client.

Dispatching is made safe to repeat: room names are deterministic per (entry, attempt), and
before creating a dispatch we ask LiveKit whether that room already has ours. A daemon that
died after LiveKit accepted a dispatch, or whose request timed out after being accepted, thus
adopts the existing call on the next claim instead of dialling the number twice; meanwhile the
entry keeps its call slot (DispatchUnknown), so the tenant's cap holds at LiveKit too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from livekit import api

from batchctl.config import LiveKitSettings

T = TypeVar("T")

PROBE = "batchctl-probe"  # a room name no call uses: ListRooms of it is a cheap health check

# SIP response codes of a failed outbound call -> the call status batchctl records.
SIP_OUTCOMES = {
    486: "busy",  # Busy Here
    600: "busy",  # Busy Everywhere
    480: "no_answer",  # Temporarily Unavailable
    408: "no_answer",  # Request Timeout: it rang out
    487: "no_answer",  # Request Terminated: the ring window closed
    603: "declined",  # Decline
    403: "rejected",
    404: "not_reachable",
    410: "not_reachable",
    484: "not_reachable",
}


# What a LiveKit request can fail with: an answer (ServerError, SipCallError), no answer in
# time, or no connection.
LIVEKIT_ERRORS = (api.ServerError, aiohttp.ClientError, asyncio.TimeoutError)


class DispatchUnknown(Exception):
    """LiveKit may have made the dispatch: the request went out and no answer could be read (a
    timeout, a dropped connection, a proxy's error page), or looking for an earlier unconfirmed
    dispatch failed. The claim keeps its call slot (batchctl.mark_dispatch_unknown)."""


def refused(exc: BaseException) -> bool:
    """LiveKit answered no (a Twirp error of its own), or the request never left (no
    connection): no dispatch was made. A 5xx without a Twirp body came from something in front
    of LiveKit, which may have passed the request on."""
    if isinstance(exc, api.ServerError):
        return exc.code != api.ServerErrorCode.UNKNOWN or exc.status < 500
    return isinstance(exc, aiohttp.ClientConnectorError)


@dataclass(frozen=True)
class Dispatched:
    dispatch_id: str
    adopted: bool  # the dispatch existed already (an earlier claim of this attempt made it)


def is_retryable(exc: BaseException) -> bool:
    """Worth trying the same dispatch again later: LiveKit unavailable or overloaded, a timeout,
    no connection. A 4xx other than rate limiting is a request LiveKit will keep refusing."""
    if isinstance(exc, api.ServerError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)


def describe(exc: BaseException) -> str:
    """One line for last_error: what failed, as LiveKit or the network said it."""
    if isinstance(exc, api.ServerError):
        return f"livekit {exc.code} ({exc.status}): {exc.message}"[:500]
    if isinstance(exc, asyncio.TimeoutError):
        return "livekit request timed out"
    return f"livekit unreachable: {type(exc).__name__}: {exc}"[:500]


def dial_failure(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """The call status and detail a failed sip-mode dial is reported with: the outcome of its
    SIP status; else ``failed``, marked ``carrier_refused`` when LiveKit refused it for capacity
    (429/503 before any SIP answer). A SIP 503 or that mark backs the call's trunk off and
    retries the entry without using an attempt (sql/028 carrier_refused)."""
    if isinstance(exc, api.SipCallError) and exc.sip_status_code is not None:
        code = exc.sip_status_code
        return SIP_OUTCOMES.get(code, "failed"), {"error": str(exc), "sip_status_code": code}
    detail: dict[str, Any] = {"error": describe(exc)}
    if isinstance(exc, api.ServerError) and exc.status in (429, 503):
        detail["carrier_refused"] = True
    return "failed", detail


class LiveKitGateway:
    """One ``LiveKitAPI`` client for the life of the event loop (it must be created inside it)."""

    def __init__(self, settings: LiveKitSettings, *, request_timeout: float = 10.0) -> None:
        self.settings = settings
        self._request_timeout = request_timeout
        self._client: api.LiveKitAPI | None = None

    async def __aenter__(self) -> LiveKitGateway:
        self._client = api.LiveKitAPI(
            self.settings.url,
            self.settings.credentials.api_key,
            self.settings.credentials.api_secret,
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            failover=False,  # a retry is batchctl's decision (mark_dispatch_failed's backoff)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> api.LiveKitAPI:
        if self._client is None:
            raise RuntimeError("LiveKitGateway is used outside `async with`")
        return self._client

    async def _timed(self, request: Awaitable[T]) -> T:
        # livekit-api 1.2 sends requests with timeout=None, which switches off the session's
        # timeout: without this a stalled LiveKit would hold the request forever.
        async with asyncio.timeout(self._request_timeout):
            return await request

    async def dispatch(
        self, room: str, agent_name: str, metadata: dict[str, Any], *, may_exist: bool
    ) -> Dispatched:
        """Dispatch ``agent_name`` to ``room`` unless that room already has it. Only a room that
        ``may_exist`` (an earlier claim of the same attempt was never acknowledged) is looked
        for first: that look-up is a round trip on the path from a freed slot to the next call."""
        if may_exist:
            try:
                existing = await self._existing_dispatch(room, agent_name)
            except LIVEKIT_ERRORS as exc:
                raise DispatchUnknown(f"looking for the earlier dispatch: {describe(exc)}") from exc
            if existing is not None:
                return Dispatched(existing, adopted=True)
        request = api.CreateAgentDispatchRequest(
            agent_name=agent_name, room=room, metadata=json.dumps(metadata, default=str)
        )
        try:
            created = await self._timed(self.client.agent_dispatch.create_dispatch(request))
        except LIVEKIT_ERRORS as exc:
            if refused(exc):
                raise
            raise DispatchUnknown(describe(exc)) from exc
        return Dispatched(created.id, adopted=False)

    async def _existing_dispatch(self, room: str, agent_name: str) -> str | None:
        # Rooms first: a self-hosted LiveKit answers ListDispatch for a room that does not
        # exist with `unavailable` (after a timeout) rather than an empty list.
        rooms = await self._timed(self.client.room.list_rooms(api.ListRoomsRequest(names=[room])))
        if rooms.rooms:
            dispatches = await self._timed(self.client.agent_dispatch.list_dispatch(room_name=room))
            for existing in dispatches:
                if existing.agent_name == agent_name:
                    return str(existing.id)
        return None

    async def reachable(self) -> bool:
        """Whether LiveKit answers at all (a refusal is an answer: dispatching will say why)."""
        try:
            await self._timed(self.client.room.list_rooms(api.ListRoomsRequest(names=[PROBE])))
        except LIVEKIT_ERRORS as exc:
            return not is_retryable(exc)
        return True

    async def has_sip_participant(self, room: str) -> bool:
        """Whether the room's phone call was dialled already (sip mode, on adopting a dispatch)."""
        reply = await self._timed(
            self.client.room.list_participants(api.ListParticipantsRequest(room=room))
        )
        return any(p.kind == api.ParticipantInfo.Kind.SIP for p in reply.participants)

    async def dial(self, room: str, phone: str, trunk: str | None, caller_id: str | None) -> None:
        """sip mode: dial ``phone`` into ``room`` on ``trunk`` (the call's trunk, else
        LIVEKIT_SIP_TRUNK_ID) from ``caller_id`` (else the trunk's own number); returns once
        answered, raises ``api.SipCallError`` when the call fails with a SIP status. (Its own
        timeout: the client sets one from the ring window when it waits for the answer.)"""
        trunk = trunk or self.settings.sip_trunk_id
        assert trunk is not None  # LiveKitSettings requires it in sip mode
        await self.client.sip.create_sip_participant(
            api.CreateSIPParticipantRequest(
                room_name=room,
                sip_trunk_id=trunk,
                sip_number=caller_id or "",
                sip_call_to=phone,
                participant_identity=f"callee-{room}",
                wait_until_answered=True,
            )
        )

    async def hang_up(self, room: str) -> None:
        """Delete the room, ending its call; a room LiveKit no longer knows is already gone."""
        try:
            await self._timed(self.client.room.delete_room(api.DeleteRoomRequest(room=room)))
        except api.ServerError as exc:
            if exc.code != api.ServerErrorCode.NOT_FOUND:
                raise

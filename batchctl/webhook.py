"""LiveKit webhooks -> call outcomes, so a call whose voice agent died still gets its real end.

LiveKit POSTs signed events (a JWT whose sha256 claim covers the body). Only verified events are
read: a bad signature is refused with 401, a body that is not UTF-8 or (signed) not an event with
400, each with one warning in the log, and nothing is written. Each event about a batchctl room
becomes one idempotent report, so LiveKit's retries and the agent's own reports can arrive in
any order. Reports go through a completer: those arriving while one report_call_statuses runs
are sent together in the next.

The voice agent knows more than LiveKit (busy rather than "rejected", the summary and analysis),
and a hang-up by batchctl is a cancel, not an end; the first final report wins. So an event that
ends a call is applied only after a grace period: if the agent (or batchctl) reported by then,
the event changes nothing. The room's progress (ringing, answered) is applied at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable

from aiohttp import web
from google.protobuf.json_format import Parse
from livekit import api

from batchctl.client.aio import AsyncClient
from batchctl.client.rows import ReportResult, StatusReport
from batchctl.completer import Completer
from batchctl.config import LiveKitCredentials
from batchctl.daemon.loop import wait_for_any
from batchctl.identifiers import call_log_id

log = logging.getLogger(__name__)

PATH = "/livekit/webhook"

# How a SIP participant left -> the call's outcome, when LiveKit says why.
LEFT_BECAUSE = {
    api.DisconnectReason.USER_UNAVAILABLE: "no_answer",
    api.DisconnectReason.USER_REJECTED: "declined",
    api.DisconnectReason.SIP_TRUNK_FAILURE: "failed",
}
# The SIP participant's sip.callStatus attribute while it is in the room.
CALL_STATUS_ATTRIBUTE = "sip.callStatus"
LIVE_CALL_STATUS = {"dialing": "ringing", "ringing": "ringing", "active": "ongoing"}


class Webhooks:
    def __init__(
        self, client: AsyncClient, credentials: LiveKitCredentials, *, grace: float = 15.0
    ) -> None:
        self.client = client
        self.reports: Completer[StatusReport, ReportResult] = Completer(client.report_call_statuses)
        self.grace = grace
        # api.WebhookReceiver's steps, taken one at a time: a body that is signed but is no
        # event is the sender's error (400), not a bad signature (401).
        self._verifier = api.TokenVerifier(credentials.api_key, credentials.api_secret)
        self._closing = asyncio.Event()
        self._deferred: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PATH, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = raw.decode("utf-8")  # LiveKit signs the UTF-8 text of the event
        except UnicodeDecodeError as exc:
            return _refused(400, "body is not UTF-8", exc)
        try:
            claims = self._verifier.verify(request.headers.get("Authorization", ""))
            signed_digest = base64.b64decode(claims.sha256 or "", validate=True)
        except Exception as exc:  # the verifier raises plain Exceptions and jwt's errors alike
            return _refused(401, "invalid signature", exc)
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), signed_digest):
            return _refused(401, "invalid signature", "the body does not match its signature")
        try:
            event = _parse(body)
        except Exception as exc:  # protobuf's ParseError, RecursionError, ...: the sender's
            return _refused(400, "malformed event", exc)
        await self.apply(event)
        return web.json_response({"ok": True})

    async def apply(self, event: api.WebhookEvent) -> None:
        """Turns one verified event into the call report it implies, if any."""
        room = event.room.name
        participant = event.participant
        if event.event == "room_finished":
            self._defer(self.client.room_call_over(room, "room_finished"))
        elif participant.kind != api.ParticipantInfo.Kind.SIP:
            return  # the agent's own comings and goings say nothing about the call
        elif event.event == "participant_joined":
            status = LIVE_CALL_STATUS.get(participant.attributes.get(CALL_STATUS_ATTRIBUTE, ""))
            if status:
                await self._report(room, StatusReport(call_log_id(room), status))
        elif event.event == "participant_left":
            reason = _disconnect_reason(participant.disconnect_reason)
            outcome = LEFT_BECAUSE.get(participant.disconnect_reason)
            self._defer(
                self._report(room, StatusReport(call_log_id(room), outcome, {"error": reason}))
                if outcome
                else self.client.room_call_over(room, f"callee left: {reason}")
            )

    async def _report(self, room: str, report: StatusReport) -> None:
        result = await self.reports.submit(report)
        # A room that is not batchctl's has no call log: nothing to say about it.
        if result.error and result.status is not None:
            log.warning("room %s: report %r refused: %s", room, report.status, result.error)

    async def close(self) -> None:
        """Applies the deferred events now: a coarser outcome is better than none."""
        self._closing.set()
        await asyncio.gather(*self._deferred, return_exceptions=True)

    def _defer(self, report: Awaitable[object]) -> None:
        task = asyncio.create_task(self._after_grace(report))
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    async def _after_grace(self, report: Awaitable[object]) -> None:
        await wait_for_any([self._closing], self.grace)
        try:
            await report
        except Exception:
            log.exception("a deferred webhook report failed")


def _parse(body: str) -> api.WebhookEvent:
    event = Parse(body, api.WebhookEvent(), ignore_unknown_fields=True)
    if not event.event:
        raise ValueError("no event type")
    if "\x00" in event.room.name:  # no PostgreSQL text can hold it
        raise ValueError("NUL in the room name")
    return event


def _disconnect_reason(number: int) -> str:
    """The reason's name; a number this livekit-api does not know (a newer server's) too."""
    if number in api.DisconnectReason.values():
        return api.DisconnectReason.Name(number)
    return f"disconnect reason {number}"


def _refused(status: int, reason: str, cause: object) -> web.Response:
    """The answer to a request that changes nothing, and one line in the log saying why."""
    detail = " ".join(str(cause).split())[:300]
    log.warning("refused a webhook (%d %s): %s", status, reason, detail)
    return web.json_response({"error": reason}, status=status)


async def serve(webhooks: Webhooks, host: str, port: int, stopping: asyncio.Event) -> None:
    """Serves the webhook endpoint on host:port until ``stopping`` is set."""
    runner = web.AppRunner(webhooks.app())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("receiving LiveKit webhooks on http://%s:%d%s", host, port, PATH)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        await webhooks.close()

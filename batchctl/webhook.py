"""LiveKit webhooks -> call outcomes, so a call whose voice agent died still gets its real end.

LiveKit POSTs signed events (a JWT whose sha256 claim covers the body). Only verified events are
read; anything else is refused with 401 and writes nothing. Each event about a batchctl room
becomes one idempotent SQL call, so LiveKit's retries and the agent's own reports can arrive in
any order.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from aiohttp import web
from livekit import api

from batchctl.config import LiveKitCredentials
from batchctl.identifiers import call_log_id
from batchctl.procedures import Procedures

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


def build_app(procedures: Procedures, credentials: LiveKitCredentials) -> web.Application:
    receiver = api.WebhookReceiver(api.TokenVerifier(credentials.api_key, credentials.api_secret))

    async def receive(request: web.Request) -> web.Response:
        body = await request.text()
        try:
            event = receiver.receive(body, request.headers.get("Authorization", ""))
        except Exception as exc:  # the verifier raises plain Exceptions and jwt's errors alike
            log.warning("refused a webhook: %s", exc)
            return web.json_response({"error": "invalid signature"}, status=401)
        await apply(procedures, event)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post(PATH, receive)
    return app


async def apply(procedures: Procedures, event: api.WebhookEvent) -> None:
    """Turns one verified event into the call report it implies, if any."""
    room = event.room.name
    try:
        if event.event == "room_finished":
            await procedures.room_call_over(room, "room_finished")
            return
        participant = event.participant
        if participant.kind != api.ParticipantInfo.Kind.SIP:
            return  # the agent's own comings and goings say nothing about the call
        if event.event == "participant_joined":
            status = LIVE_CALL_STATUS.get(participant.attributes.get(CALL_STATUS_ATTRIBUTE, ""))
            if status:
                await procedures.report_call_status(call_log_id(room), status)
        elif event.event == "participant_left":
            reason = api.DisconnectReason.Name(participant.disconnect_reason)
            outcome = LEFT_BECAUSE.get(participant.disconnect_reason)
            if outcome:
                await procedures.report_call_status(call_log_id(room), outcome, {"error": reason})
            else:
                await procedures.room_call_over(room, f"callee left: {reason}")
    except psycopg.Error as exc:
        if exc.sqlstate != "BC002":
            raise
        log.debug("webhook %s for %s: not a batchctl call", event.event, room)


async def serve(
    procedures: Procedures,
    credentials: LiveKitCredentials,
    host: str,
    port: int,
    stopping: asyncio.Event,
) -> None:
    """Serves the webhook endpoint on host:port until ``stopping`` is set."""
    runner = web.AppRunner(build_app(procedures, credentials))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("receiving LiveKit webhooks on http://%s:%d%s", host, port, PATH)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()

"""LiveKit webhooks, signed as LiveKit signs them: the body is the protobuf JSON of a
WebhookEvent, and the ``Authorization`` header is a bare JWT (HS256, the API secret, ``iss`` =
the API key) whose ``sha256`` claim is the base64 SHA-256 of the body. livekit-api's
``WebhookReceiver(TokenVerifier(key, secret)).receive(body, header)`` accepts exactly that.

Events go out one at a time in the order they happened (a receiver sees a participant join
before it leaves); a failed delivery is retried a few times, then counted and dropped, as
LiveKit does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time

import aiohttp
import jwt
from google.protobuf.json_format import MessageToJson
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from batchctl.config import LiveKitCredentials
from batchctl.sim.stats import SimStats

log = logging.getLogger(__name__)

TOKEN_TTL_S = 300
ATTEMPTS = 3
RETRY_DELAY_S = 0.2
POST_TIMEOUT_S = 5.0


def sign(body: str, credentials: LiveKitCredentials) -> str:
    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    claims = {"iss": credentials.api_key, "nbf": now, "exp": now + TOKEN_TTL_S, "sha256": digest}
    return jwt.encode(claims, credentials.api_secret, algorithm="HS256")


def event(name: str, room: Room, participant: ParticipantInfo | None = None) -> WebhookEvent:
    webhook = WebhookEvent(
        event=name, room=room, id=f"EV_{secrets.token_hex(6)}", created_at=int(time.time())
    )
    if participant is not None:
        webhook.participant.CopyFrom(participant)
    return webhook


class WebhookSender:
    def __init__(self, url: str, credentials: LiveKitCredentials, stats: SimStats) -> None:
        self._url = url
        self._credentials = credentials
        self._stats = stats
        self._queue: asyncio.Queue[WebhookEvent] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S))
        self._worker = asyncio.create_task(self._deliver_all(), name="sim-webhooks")

    def send(self, webhook: WebhookEvent) -> None:
        self._queue.put_nowait(webhook)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _deliver_all(self) -> None:
        while True:
            webhook = await self._queue.get()
            self._stats.webhook(await self._deliver(webhook))

    async def _deliver(self, webhook: WebhookEvent) -> bool:
        assert self._session is not None
        body = MessageToJson(webhook, indent=None)
        for attempt in range(1, ATTEMPTS + 1):
            headers = {
                "Authorization": sign(body, self._credentials),
                "Content-Type": "application/webhook+json",
            }
            try:
                async with self._session.post(self._url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        return True
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = repr(exc)
            log.warning(
                "webhook %s attempt %d to %s: %s", webhook.event, attempt, self._url, problem
            )
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY_S * attempt)
        return False

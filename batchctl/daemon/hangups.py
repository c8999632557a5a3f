"""The hang-up loop: delete the LiveKit rooms the database queued in batchctl.hangups."""

from __future__ import annotations

import asyncio
import logging

from batchctl.client.aio import AsyncClient
from batchctl.client.rows import HangupRequest
from batchctl.livekit import LIVEKIT_ERRORS, LiveKitGateway, describe

log = logging.getLogger(__name__)


class HangupLoop:
    def __init__(
        self, client: AsyncClient, gateway: LiveKitGateway, *, worker: str, limit: int = 20
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.worker = worker
        self.limit = limit

    async def step(self) -> float | None:
        requests = await self.client.claim_hangups(self.worker, self.limit)
        await asyncio.gather(*(self.hang_up(r) for r in requests))
        return 0 if len(requests) == self.limit else None

    async def hang_up(self, request: HangupRequest) -> None:
        try:
            await self.gateway.hang_up(request.room_name)
        except LIVEKIT_ERRORS as exc:
            log.warning("hang-up of %s failed: %s", request.room_name, describe(exc))
            await self.client.hangup_failed(request.room_name, describe(exc))
            return
        log.info("hung up %s (%s)", request.room_name, request.reason)
        await self.client.hangup_done(request.room_name)

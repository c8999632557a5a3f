"""The webhook loop: send the deliveries the database queued in the transactions of the
transitions they report (sql/056; claimed and recorded by sql/059; docs/webhooks.md), signed,
and record each answer.

Each claimed delivery is a task of its own, so a slow or dead endpoint holds only its own
deliveries (each at most the timeout), never another endpoint's nor the dialling. The database
orders an entry's events and leases each delivery; an answer the daemon could not record (it
died) is sent again by whoever claims it after the lease, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime

import aiohttp

from batchctl.client.aio import AsyncClient
from batchctl.client.rows import WebhookDelivery
from batchctl.daemon.tasks import InHand
from batchctl.outbound.sender import post
from batchctl.outbound.signing import headers

log = logging.getLogger(__name__)


class DeliveryLoop:
    def __init__(
        self,
        client: AsyncClient,
        session: aiohttp.ClientSession,
        wake: asyncio.Event,
        *,
        worker: str,
        allow_private: bool,
        timeout_s: float = 10.0,
        limit: int = 50,
        max_in_flight: int = 200,
    ) -> None:
        self.client = client
        self.session = session
        self.worker = worker
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.limit = limit
        # Well past the timeout and the record of the answer: another daemon takes over only a
        # delivery whose sender is gone.
        self.lease_seconds = math.ceil(2 * timeout_s) + 5
        self.in_hand = InHand(max_in_flight, wake)

    async def step(self) -> float | None:
        free = self.in_hand.free()
        if free <= 0:
            return None  # a finishing task wakes us
        limit = min(self.limit, free)
        deliveries = await self.client.claim_webhook_deliveries(
            self.worker, limit, self.lease_seconds
        )
        for delivery in deliveries:
            self.in_hand.spawn(self.deliver(delivery), f"delivery {delivery.delivery_id}")
        return 0 if len(deliveries) == limit else None

    async def drain(self, timeout: float) -> None:
        """Waits for the deliveries in hand; the rest come back when their leases run out."""
        await self.in_hand.drain(timeout, "webhook deliveries")

    async def deliver(self, delivery: WebhookDelivery) -> None:
        body = delivery.body.encode()
        # Signed at the attempt's time: receivers refuse a stale webhook-timestamp.
        signed = headers(delivery.secret, delivery.message_id, datetime.now(UTC), body)
        response = await post(
            self.session, delivery.url, signed, body,
            allow_private=self.allow_private, timeout_s=self.timeout_s,
        )  # fmt: skip
        # The database decides what the answer makes of the delivery, and when it is retried.
        status = await self.client.record_webhook_attempt(
            delivery, response.status, response.error, response.body, response.elapsed_ms
        )
        if status == "delivered":
            # The next event of its entry (or batch) may have waited for it: claim it now,
            # not at the next poll.
            self.in_hand.wake.set()
            return
        log.warning(
            "delivery %s (%s) to %s: %s; %s",
            delivery.delivery_id, delivery.event_type, delivery.url,
            response.error or f"HTTP {response.status}",
            "to be tried again" if status == "pending" else status,
        )  # fmt: skip

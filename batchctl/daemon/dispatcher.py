"""The dispatch loop: claim entries, dispatch each to LiveKit, acknowledge in the database.

Each claimed entry becomes a task, so that whatever goes wrong with one entry (a lead that
cannot be read, an error nobody planned for) ends that entry and nothing else: its lead is
decoded, LiveKit dispatches it (adopting an existing dispatch for a repeated attempt), and it is
acknowledged through the completer (mark_dispatched_many, with the other tasks'
acknowledgements); or mark_dispatch_failed when LiveKit refused, with whether a retry can help;
or mark_dispatch_unknown when LiveKit may have made the dispatch without our learning so (the
entry keeps its call slot). In sip mode the task then dials the callee and reports ringing, the
answer or the SIP failure. The database decides everything else: caps, fairness, retries, what
a failure means.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from batchctl.client.aio import AsyncClient
from batchctl.client.rows import Ack, AckResult, Claim, ClaimRow
from batchctl.completer import Completer
from batchctl.daemon.circuit import Circuit
from batchctl.daemon.pacing import Refill, until
from batchctl.daemon.tasks import InHand
from batchctl.identifiers import call_log_id
from batchctl.livekit import (
    LIVEKIT_ERRORS,
    DispatchUnknown,
    LiveKitGateway,
    describe,
    dial_failure,
    is_retryable,
)

log = logging.getLogger(__name__)


def dispatch_metadata(claim: Claim, sip_trunk_id: str | None) -> dict[str, Any]:
    """What the voice agent receives (docs/agent-contract.md): whom to call, about what, on
    which trunk and from which caller ID, and the call log to report to with
    batchctl.report_call_status."""
    return {
        "call_log_id": str(call_log_id(claim.room_name)),
        "entry_id": str(claim.entry_id),
        "batch_id": str(claim.batch_id),
        "tenant_id": str(claim.tenant_id),
        "attempt": claim.attempt,
        "to_phone": claim.to_phone,
        "lead_name": claim.lead_name,
        "context": claim.context,
        "options": claim.options,
        "sip_trunk_id": claim.livekit_trunk_id or sip_trunk_id,
        "caller_id": claim.caller_id,
    }


class Dispatcher:
    def __init__(
        self,
        client: AsyncClient,
        gateway: LiveKitGateway,
        wake: asyncio.Event,
        *,
        worker: str,
        default_agent: str,
        claim_limit: int,
        lease_seconds: int,
        max_in_flight: int = 500,
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.worker = worker
        self.default_agent = default_agent
        self.claim_limit = claim_limit
        self.lease_seconds = lease_seconds
        self.circuit = Circuit()
        self.acks: Completer[Ack, AckResult] = Completer(client.mark_dispatched_many)
        self.in_hand = InHand(max_in_flight, wake)
        self.refill = Refill()

    async def step(self) -> float | None:
        if self.circuit.is_open:
            if (wait := self.circuit.probe_due_in()) > 0:
                return wait
            if not await self.gateway.reachable():
                return self.circuit.still_down()
            self.circuit.close()
        free = self.in_hand.free()
        if free <= 0:
            return None  # a finishing task wakes us
        limit = min(self.claim_limit, free)
        claims = await self.client.claim_entries(self.worker, limit, self.lease_seconds)
        now = asyncio.get_running_loop().time()
        for claim in claims:
            slot = None if claim.dial_in is None else now + claim.dial_in
            self.in_hand.spawn(self.dispatch(claim, slot), f"dispatch {claim.room_name}")
        # A short claim took all the tenants it could lock had for now; a tenant another claimer
        # held is that claimer's to fill (sql/050), so only a full claim means "more waiting".
        if len(claims) == limit:
            return 0
        return self.refill.after_claim(now, (claim.dial_in for claim in claims))

    async def drain(self, timeout: float) -> None:
        """Waits for the entries in hand (a sip dial: until answered or failed), then gives up
        on the rest: their leases return them (an entry's lease holds its slot, and the next
        claim adopts whatever LiveKit already has), their calls are resolved by the voice
        agent, webhooks or the sweep."""
        await self.in_hand.drain(timeout, "dispatches")

    async def dispatch(self, row: ClaimRow, slot: float | None = None) -> None:
        """``slot``: the event loop's time of the call's pacing slot (its trunk's, sql/051): the
        call starts at the carrier no earlier."""
        try:
            claim = row.decode()
        except (ValueError, RecursionError) as exc:
            # Nothing was sent, and no retry can read it better: the entry fails, alone.
            log.error("entry %s: its lead data cannot be read: %s", row.entry_id, exc)
            error = f"lead data cannot be read: {type(exc).__name__}: {exc}"[:300]
            await self.client.mark_dispatch_failed(row.entry_id, error, False)
            return
        try:
            await self._dispatch(claim, slot)
        except Exception as exc:
            # An error nobody planned for (a bug, a reply that cannot be decoded): LiveKit may
            # have made the dispatch, so the entry keeps its slot and its re-claim looks for
            # the room; its failures are counted, so it ends instead of coming back with every
            # lease. (A no-op once acknowledged.)
            log.exception("dispatch of %s failed unexpectedly", claim.room_name)
            error = f"dispatch failed unexpectedly: {type(exc).__name__}: {exc}"[:300]
            await self.client.mark_dispatch_unknown(claim.entry_id, error)

    async def _dispatch(self, claim: Claim, slot: float | None) -> None:
        room = claim.room_name
        agent = claim.options.get("agent_name") or self.default_agent
        metadata = dispatch_metadata(claim, self.gateway.settings.sip_trunk_id)
        sip = self.gateway.settings.mode == "sip"
        if not sip:
            await until(slot)  # the agent dials as soon as it is dispatched
        try:
            dispatched = await self.gateway.dispatch(
                room, agent, metadata, may_exist=claim.dispatch_unconfirmed
            )
        except DispatchUnknown as exc:
            if exc.__cause__ is not None and is_retryable(exc.__cause__):
                self.circuit.trip(describe(exc.__cause__))
            status = await self.client.mark_dispatch_unknown(claim.entry_id, str(exc))
            log.warning("dispatch of %s unconfirmed (%s): entry %s, slot kept", room, exc, status)
            return
        except LIVEKIT_ERRORS as exc:
            if is_retryable(exc):
                self.circuit.trip(describe(exc))
            status = await self.client.mark_dispatch_failed(
                claim.entry_id, describe(exc), is_retryable(exc)
            )
            log.warning("dispatch of %s failed (%s): entry %s", room, describe(exc), status)
            return
        ack = await self.acks.submit(Ack(claim.entry_id, room, dispatched.dispatch_id))
        if ack.call_log_id is None:
            # Cancelled, or re-queued after our lease ran out: nobody will follow this call.
            log.info(
                "claim of %s is gone (entry %s%s): hanging up",
                room,
                ack.status or "deleted",
                f", {ack.error}" if ack.error else "",
            )
            await self._hang_up_orphan(room)
            return
        call = ack.call_log_id
        log.debug("dispatched %s (%s)", room, "adopted" if dispatched.adopted else "new")
        if sip and not (dispatched.adopted and await self.gateway.has_sip_participant(room)):
            await until(slot)  # the call starts at the carrier with our dial
            await self._dial(claim, call)

    async def _dial(self, claim: Claim, call: UUID) -> None:
        await self.client.report_call_status(call, "ringing")
        try:
            await self.gateway.dial(
                claim.room_name, claim.to_phone, claim.livekit_trunk_id, claim.caller_id
            )
        except LIVEKIT_ERRORS as exc:
            await self.client.report_call_status(call, *dial_failure(exc))
        else:
            await self.client.report_call_status(call, "ongoing")

    async def _hang_up_orphan(self, room: str) -> None:
        try:
            await self.gateway.hang_up(room)
        except LIVEKIT_ERRORS as exc:
            # No call log exists for it, so no outbox row: the agent gives up on its own.
            log.warning("could not hang up orphaned room %s: %s", room, describe(exc))

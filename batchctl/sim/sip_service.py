"""``livekit.SIP``: CreateSIPParticipant, which needs the ``sip.call`` grant.

With ``wait_until_answered`` the reply comes when the callee answers; a call that fails raises
the Twirp error LiveKit sends, whose ``meta`` carries ``sip_status_code`` and ``sip_status``
(livekit-api turns it into SipCallError). A call the carrier refuses over its trunk's limits
(batchctl.sim.carrier; ``sip_number`` is the caller ID it records) fails at once with SIP 503
``unavailable``, waiting or not. A call dialled into a dispatched room whose agent does
not dial (sip mode) is that dispatch's call; any other is a phone call of its own.
"""

from __future__ import annotations

import asyncio
import secrets

from livekit.protocol.sip import CreateSIPParticipantRequest, SIPParticipantInfo

from batchctl.sim.auth import Claims, require_sip_call
from batchctl.sim.call_info import CallInfo
from batchctl.sim.calls import Call
from batchctl.sim.context import SimContext
from batchctl.sim.outcomes import ANSWERED, CARRIER_REFUSED, HUNG_UP, SIP_FAILURES, SipFailure
from batchctl.sim.rooms import SimRoom, World
from batchctl.sim.twirp import Method, TwirpError


class SipService:
    def __init__(self, ctx: SimContext, world: World) -> None:
        self._ctx = ctx
        self._world = world

    def methods(self) -> dict[str, Method]:
        return {
            "livekit.SIP/CreateSIPParticipant": Method(
                CreateSIPParticipantRequest, self.create_sip_participant
            )
        }

    async def create_sip_participant(
        self, req: CreateSIPParticipantRequest, claims: Claims
    ) -> SIPParticipantInfo:
        require_sip_call(claims)
        for name in ("room_name", "sip_call_to"):
            if not getattr(req, name):
                raise TwirpError("invalid_argument", f"{name} is required")
        if not req.sip_trunk_id and not req.HasField("trunk"):
            raise TwirpError("invalid_argument", "sip_trunk_id (or trunk) is required")
        room = self._world.room(req.room_name)
        call = _waiting_call(room, req.sip_call_to) or self._own_call(room, req.sip_call_to)
        ringing_timeout = req.ringing_timeout.ToTimedelta().total_seconds() or None
        participant = call.dial(
            req.sip_trunk_id,
            req.participant_identity,
            "api",
            ringing_timeout,
            caller_id=req.sip_number or None,
        )
        if call.dispatch is None:
            call.start()  # also when refused: its task closes the room it opened
        if participant is None:
            raise _sip_error(CARRIER_REFUSED)
        reply = SIPParticipantInfo(
            participant_id=participant.sid,
            participant_identity=participant.identity,
            room_name=room.name,
            sip_call_id=participant.attributes["sip.callID"],
        )
        if not req.wait_until_answered:
            return reply
        # shield: a client that gives up waiting must not resolve the call for its agent.
        outcome = await asyncio.shield(call.answered)
        if outcome in ANSWERED:
            return reply
        raise _sip_error(SIP_FAILURES.get(outcome, HUNG_UP))

    def _own_call(self, room: SimRoom, phone: str) -> Call:
        """A call outside any waiting dispatch: a second CreateSIPParticipant for one number is
        a second phone call, and counted as one."""
        infos = [i for d in room.dispatches if (i := CallInfo.from_metadata(room.name, d.metadata))]
        latest = infos[-1] if infos else None
        return Call(
            self._ctx,
            room,
            key=f"SIP_{secrets.token_hex(6)}",
            tenant_id=latest.tenant_id if latest else "",
            phone=phone,
            attempt=latest.attempt if latest else 1,
            done=self._world.call_done,
        )


def _sip_error(failure: SipFailure) -> TwirpError:
    """The error LiveKit answers a failed call with (livekit-api raises SipCallError)."""
    return TwirpError(
        failure.twirp_code,
        f"twirp error unknown: sip status: {failure.status_code}: {failure.status}",
        meta={"sip_status_code": str(failure.status_code), "sip_status": failure.status},
    )


def _waiting_call(room: SimRoom, phone: str) -> Call | None:
    """The dispatched call whose agent waits for this callee (sip mode)."""
    waiting = [c for c in room.calls if c.awaits_sip and c.phone == phone]
    return waiting[-1] if waiting else None

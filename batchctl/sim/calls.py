"""One simulated phone call: the SIP leg to the callee and, when the call came from a dispatch,
its voice agent (batchctl.sim.agent, passed in).

Dialling starts the call at the carrier (batchctl.sim.carrier), which may refuse it over its
trunk's limits: then it fails at once with SIP 503 (CARRIER_REFUSED), as a "failed" outcome
fails, but without ringing and without a participant. Otherwise the leg rings for the plan's
ring time, then fails with its SIP status or is answered and lasts the plan's call length, after
which the callee hangs up; it holds its place on the trunk until it is over. The call stops
being live (SimStats) *before* anyone hears of its end: the agent's final report and
CreateSIPParticipant's answer both wait for ``answered`` / ``hung_up``, which are set right
after.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

from livekit.protocol.agent_dispatch import AgentDispatch
from livekit.protocol.models import DisconnectReason, ParticipantInfo, Room

from batchctl.sim.context import SimContext
from batchctl.sim.outcomes import CARRIER_REFUSED, SIP_FAILURES, SipFailure
from batchctl.sim.stats import SipParticipantRecord

log = logging.getLogger(__name__)

CALL_STATUS = "sip.callStatus"
# Rejected before the phone ever rings: the participant never gets past "dialing".
NEVER_RINGS = ("busy", "not_reachable", "failed")

# A call's voice agent (batchctl.sim.agent.run_agent with the dispatch's metadata), passed in
# so that a call needs to know nothing of agents.
Agent = Callable[["Call"], Awaitable[None]]


class CallRoom(Protocol):
    """What a call needs of its room (batchctl.sim.rooms.SimRoom, which holds its calls)."""

    name: str
    calls: list[Call]

    def to_proto(self) -> Room: ...


class Call:
    def __init__(
        self,
        ctx: SimContext,
        room: CallRoom,
        *,
        key: str,
        tenant_id: str,
        phone: str,
        attempt: int,
        done: Callable[[Call], None],
        agent: Agent | None = None,
        dispatch: AgentDispatch | None = None,
    ) -> None:
        self.ctx = ctx
        self.room = room
        self.key = key  # the dispatch id, or the participant's for a call outside any dispatch
        self.phone = phone
        self._agent = agent
        self.dispatch = dispatch
        self.plan = ctx.scenario.plan_for(phone, attempt)
        # The leg's outcome once answered or failed; "cancelled" if the call ended before that.
        self.answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.hung_up = asyncio.Event()
        self.failure: SipFailure | None = None  # how the leg failed, if it did
        self.dialled = False  # somebody dialled the callee, even if the carrier refused it
        self.participant: ParticipantInfo | None = None  # the callee, once dialled
        self.agent: ParticipantInfo | None = None  # the agent, while it is in the room
        self._done = done  # the call is over: its room may close
        self._tasks: set[asyncio.Task[None]] = set()
        self._leg: asyncio.Task[None] | None = None
        self._ended = False
        self._trunk: str | None = None  # the trunk whose carrier accepted the call, until over
        room.calls.append(self)
        ctx.stats.call_started(key, tenant_id, phone)

    @property
    def in_room(self) -> bool:
        return self.participant is not None and not self.hung_up.is_set()

    @property
    def awaits_sip(self) -> bool:
        """Dispatched to an agent that does not dial, and nobody has dialled yet: a
        CreateSIPParticipant for this callee joins this call."""
        return (
            self.ctx.scenario.mode != "agent"
            and self.dispatch is not None
            and not self.dialled
            and not self._ended
        )

    def start(self) -> None:
        self._spawn(self._run())

    def dial(
        self,
        trunk_id: str,
        identity: str,
        dialed_by: str,
        ringing_timeout: float | None = None,
        caller_id: str | None = None,
    ) -> ParticipantInfo | None:
        """The SIP participant joins the room and the callee's phone starts ringing; None if the
        carrier refused the call (it is over: ``failure`` is CARRIER_REFUSED)."""
        self.dialled = True
        if not self.ctx.carrier.start(
            trunk_id, room=self.room.name, phone=self.phone, caller_id=caller_id
        ):
            self._fail("failed", CARRIER_REFUSED)
            return None
        self._trunk = trunk_id
        now = time.time()
        ring_s, outcome = self.plan.ring_time_s, self.plan.outcome
        if ringing_timeout is not None and ring_s > ringing_timeout:
            ring_s, outcome = ringing_timeout, "no_answer"
        attributes = {
            CALL_STATUS: "dialing",
            "sip.phoneNumber": self.phone,
            "sip.trunkID": trunk_id,
            "sip.callID": f"SCL_{secrets.token_hex(6)}",
        }
        if caller_id:
            attributes["sip.trunkPhoneNumber"] = caller_id  # as LiveKit names the caller ID
        self.participant = ParticipantInfo(
            sid=f"PA_{secrets.token_hex(6)}",
            identity=identity or f"sip_{self.phone}",
            kind=ParticipantInfo.Kind.SIP,
            state=ParticipantInfo.State.JOINED,
            joined_at=int(now),
            joined_at_ms=int(now * 1000),
            attributes=attributes,
        )
        self.ctx.stats.sip_participant(
            SipParticipantRecord(
                self.room.name,
                self.phone,
                trunk_id,
                self.participant.identity,
                outcome,
                dialed_by,
                now,
                caller_id,
            )
        )
        self.ctx.notify("participant_joined", self.room.to_proto(), self.participant)
        self._leg = self._spawn(self._ring_and_talk(ring_s, outcome))
        return self.participant

    def agent_joins(self) -> None:
        now = time.time()
        self.agent = ParticipantInfo(
            sid=f"PA_{secrets.token_hex(6)}",
            identity=f"agent-{self.key}",
            kind=ParticipantInfo.Kind.AGENT,
            state=ParticipantInfo.State.ACTIVE,
            joined_at=int(now),
            joined_at_ms=int(now * 1000),
        )

    def end(self, disconnect_reason: str) -> None:
        """The phone call is over (idempotent): no longer live, the participant leaves."""
        if self._ended:
            return
        self._ended = True
        self.ctx.stats.call_ended(self.key)
        if self._trunk is not None:
            self.ctx.carrier.finished(self._trunk)
            self._trunk = None
        if not self.answered.done():
            self.answered.set_result("cancelled")
        if self.participant is not None:
            self.participant.state = ParticipantInfo.State.DISCONNECTED
            # The stubs type the field as the enum class; its values are ints, as Value() returns.
            self.participant.disconnect_reason = cast(
                DisconnectReason, DisconnectReason.Value(disconnect_reason)
            )
            self.ctx.notify("participant_left", self.room.to_proto(), self.participant)
        self.hung_up.set()
        if self._leg is not None and self._leg is not asyncio.current_task():
            self._leg.cancel()

    def hang_up(self, disconnect_reason: str = "ROOM_DELETED") -> None:
        """Ends the call at once; its agent reports nothing more."""
        self.end(disconnect_reason)
        self.stop()

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancels the call's tasks; returns them, to be awaited."""
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        return others

    async def _run(self) -> None:
        try:
            if self._agent is not None:
                await self._agent(self)
                self.agent = None  # done, or crashed: it left
            if self.participant is not None:
                await self.hung_up.wait()  # a crashed agent: the callee hangs up in the end
        except asyncio.CancelledError:
            self.end("SERVER_SHUTDOWN")  # a no-op after hang_up, which ended it first
            raise
        except Exception:
            log.exception("room %s: the simulated agent failed", self.room.name)
            self.end("AGENT_ERROR")
        finally:
            self.end("CLIENT_INITIATED")  # an agent that never got a callee just leaves
            self._done(self)

    async def _ring_and_talk(self, ring_s: float, outcome: str) -> None:
        assert self.participant is not None
        if outcome not in NEVER_RINGS:
            self.participant.attributes[CALL_STATUS] = "ringing"
        await asyncio.sleep(ring_s)
        if self._ended:
            return
        failure = SIP_FAILURES.get(outcome)
        if failure is not None:
            self._fail(outcome, failure)
            return
        self.answered.set_result(outcome)
        self.participant.attributes[CALL_STATUS] = "active"
        await asyncio.sleep(self.plan.call_length_s)
        self.end("CLIENT_INITIATED")

    def _fail(self, outcome: str, failure: SipFailure) -> None:
        self.failure = failure
        self.answered.set_result(outcome)  # waiters resume only after end() below has run
        self.end(failure.disconnect_reason)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"sim-call-{self.room.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

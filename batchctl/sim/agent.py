"""The simulated voice agent of a dispatch: what it reads from the dispatch metadata and what it
reports to batchctl as the call goes on.

It joins after the plan's join delay. If it dials (agent mode) it reports ``ringing``, then
``ongoing`` and, when the callee hangs up, the final status with a summary; or the failure
outcome with its SIP status. If batchctl dials (sip mode) batchctl reports all of that itself,
and the agent only reports the end of an answered call. A crashing agent reports nothing after
``ongoing``. An agent that cannot report hangs up and leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from batchctl.identifiers import call_log_id
from batchctl.sim.outcomes import ANSWERED, SIP_FAILURES

if TYPE_CHECKING:
    from batchctl.sim.calls import Call

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallInfo:
    """The dispatch metadata the agent works from (batchctl's daemon writes it)."""

    call_log_id: UUID
    tenant_id: str
    phone: str
    attempt: int
    lead_name: str
    sip_trunk_id: str

    @classmethod
    def from_metadata(cls, room: str, metadata: str) -> CallInfo | None:
        """None when the metadata names no phone number or a bad call log id: the agent has
        nothing to do."""
        try:
            doc: Any = json.loads(metadata)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("to_phone"), str):
            return None
        try:
            # The daemon sends it; it is a function of the room anyway.
            call_id = UUID(str(doc.get("call_log_id") or call_log_id(room)))
        except ValueError:
            return None
        attempt = doc.get("attempt")
        return cls(
            call_log_id=call_id,
            tenant_id=str(doc.get("tenant_id") or ""),
            phone=doc["to_phone"],
            attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
            lead_name=str(doc.get("lead_name") or ""),
            sip_trunk_id=str(doc.get("sip_trunk_id") or ""),
        )


async def run_agent(call: Call, info: CallInfo) -> None:
    scenario, reporter = call.ctx.scenario, call.ctx.reporter
    await asyncio.sleep(call.plan.join_delay_s)
    call.agent_joins()

    async def report(status: str, detail: dict[str, Any] | None = None) -> bool:
        return await reporter.report(call.room.name, info.call_log_id, status, detail)

    dials = scenario.mode == "agent" or (scenario.mode == "auto" and call.participant is None)
    if dials:
        call.dial(info.sip_trunk_id, f"sip_{info.phone}", dialed_by="agent")
        if not await report("ringing"):
            call.end("CLIENT_INITIATED")
            return
        outcome = await call.answered
    else:
        try:
            # shield: giving up must not resolve the call's future for its other waiters.
            outcome = await asyncio.wait_for(
                asyncio.shield(call.answered), scenario.report_give_up_s
            )
        except TimeoutError:
            log.warning("room %s: nobody dialled the callee; the agent leaves", call.room.name)
            return

    if outcome not in ANSWERED:
        if dials and outcome in SIP_FAILURES:
            await report(outcome, SIP_FAILURES[outcome].detail())
        return
    if dials and not await report("ongoing"):
        call.end("CLIENT_INITIATED")
        return
    if call.plan.agent_crashes:
        log.info("room %s: the simulated agent crashes after 'ongoing'", call.room.name)
        return
    await call.hung_up.wait()
    await report(outcome, final_detail(info, outcome, call.plan.call_length_s))


def final_detail(info: CallInfo, outcome: str, call_length_s: float) -> dict[str, Any]:
    seconds = round(call_length_s, 3)
    who = info.lead_name or info.phone
    summary = (
        f"Reached the voicemail of {who}; left no message."
        if outcome == "voicemail"
        else f"Talked with {who} for {seconds:g} s."
    )
    return {
        "summary": f"{summary} (LiveKit simulator)",
        "analysis": {"outcome": outcome, "attempt": info.attempt, "simulated": True},
        "duration_seconds": seconds,
    }

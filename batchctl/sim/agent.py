"""The simulated voice agent of a dispatch: what it reports to batchctl as the call goes on (what
it reads from the dispatch metadata: batchctl.sim.call_info).

It joins after the plan's join delay. If it dials (agent mode) it reports ``ringing``, then
``ongoing`` and, when the callee hangs up, the final status with a summary; or the failure
outcome with its SIP status. A call the carrier refuses (batchctl.sim.carrier) never rings: the
agent reports only ``failed`` with SIP 503 and ``"carrier_refused": true``. If batchctl dials
(sip mode) batchctl reports all of that itself, and the agent only reports the end of an
answered call. A crashing agent reports nothing after ``ongoing``. An agent that cannot report
hangs up and leaves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from batchctl.sim.call_info import CallInfo
from batchctl.sim.outcomes import ANSWERED

if TYPE_CHECKING:
    from batchctl.sim.calls import Call

log = logging.getLogger(__name__)


async def run_agent(info: CallInfo, call: Call) -> None:
    scenario, reporter = call.ctx.scenario, call.ctx.reporter
    await asyncio.sleep(call.plan.join_delay_s)
    call.agent_joins()

    async def report(status: str, detail: dict[str, Any] | None = None) -> bool:
        return await reporter.report(call.room.name, info.call_log_id, status, detail)

    dials = scenario.mode == "agent" or (scenario.mode == "auto" and not call.dialled)
    if dials:
        callee = call.dial(
            info.sip_trunk_id, f"sip_{info.phone}", dialed_by="agent", caller_id=info.caller_id
        )
        # None: the carrier refused the call, which never rang; only its failure is reported.
        if callee is not None and not await report("ringing"):
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
        if dials and call.failure is not None:
            await report(outcome, call.failure.detail())
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

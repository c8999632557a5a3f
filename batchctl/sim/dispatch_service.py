"""``livekit.AgentDispatchService``: CreateDispatch (with the scenario's faults), ListDispatch,
DeleteDispatch. Every method needs ``roomAdmin`` for its room."""

from __future__ import annotations

import asyncio
import secrets
import time
from functools import partial

from livekit.protocol.agent_dispatch import (
    AgentDispatch,
    AgentDispatchState,
    CreateAgentDispatchRequest,
    DeleteAgentDispatchRequest,
    ListAgentDispatchRequest,
    ListAgentDispatchResponse,
)

from batchctl.sim.agent import run_agent
from batchctl.sim.auth import Claims, require_room_admin
from batchctl.sim.call_info import CallInfo
from batchctl.sim.calls import Call
from batchctl.sim.context import SimContext
from batchctl.sim.rooms import World
from batchctl.sim.stats import DispatchRecord
from batchctl.sim.twirp import GarbledReply, Method, TwirpError

SERVICE = "livekit.AgentDispatchService"


class AgentDispatchService:
    def __init__(self, ctx: SimContext, world: World) -> None:
        self._ctx = ctx
        self._world = world
        self._create_calls = 0  # numbers each CreateDispatch for the scenario's faults

    def methods(self) -> dict[str, Method]:
        return {
            f"{SERVICE}/CreateDispatch": Method(CreateAgentDispatchRequest, self.create_dispatch),
            f"{SERVICE}/ListDispatch": Method(ListAgentDispatchRequest, self.list_dispatch),
            f"{SERVICE}/DeleteDispatch": Method(DeleteAgentDispatchRequest, self.delete_dispatch),
        }

    async def create_dispatch(
        self, req: CreateAgentDispatchRequest, claims: Claims
    ) -> AgentDispatch:
        """Creates the room if need be (as LiveKit does) and sends the agent in."""
        require_room_admin(claims, req.room)
        arrived = time.time()
        self._create_calls += 1
        faults = self._ctx.scenario.dispatch_faults
        fault = self._ctx.scenario.dispatch_fault(self._create_calls)
        await asyncio.sleep(faults.latency_s)
        if fault == "error":
            raise TwirpError("unavailable", "simulated LiveKit outage: no dispatch was created")
        if not req.room:
            raise TwirpError("invalid_argument", "room is required")
        room = self._world.room(req.room)
        dispatch = AgentDispatch(
            id=f"AD_{secrets.token_hex(6)}",
            agent_name=req.agent_name,
            room=req.room,
            metadata=req.metadata,
            state=AgentDispatchState(created_at=time.time_ns()),
        )
        room.dispatches.append(dispatch)
        info = CallInfo.from_metadata(req.room, req.metadata)
        self._ctx.stats.dispatch(
            DispatchRecord(
                room=req.room,
                dispatch_id=dispatch.id,
                agent_name=req.agent_name,
                tenant_id=info.tenant_id if info else "",
                phone=info.phone if info else "",
                attempt=info.attempt if info else 0,
                at=arrived,
            )
        )
        if info is None:
            self._ctx.stats.error("agent", "metadata_without_to_phone")
        else:
            Call(
                self._ctx,
                room,
                key=dispatch.id,
                tenant_id=info.tenant_id,
                phone=info.phone,
                attempt=info.attempt,
                done=self._world.call_done,
                agent=partial(run_agent, info),
                dispatch=dispatch,
            ).start()
        if fault == "stall":
            await asyncio.sleep(faults.stall_s)  # the dispatch exists; the caller may give up
        if fault == "garble":
            raise GarbledReply  # the dispatch exists; the caller cannot read that it does
        return dispatch

    async def list_dispatch(
        self, req: ListAgentDispatchRequest, claims: Claims
    ) -> ListAgentDispatchResponse:
        require_room_admin(claims, req.room)
        room = self._world.rooms.get(req.room)
        if room is None:
            if self._ctx.scenario.list_dispatch_missing_room == "empty":
                return ListAgentDispatchResponse()  # as LiveKit Cloud answers
            # As a self-hosted LiveKit answers: no node serves the room (after a 3 s psrpc
            # timeout, which we spare the caller): livekit/python-sdks#466, livekit#4488.
            raise TwirpError("unavailable", "twirp error unknown: no response from servers")
        found = [d for d in room.dispatches if not req.dispatch_id or d.id == req.dispatch_id]
        return ListAgentDispatchResponse(agent_dispatches=found)

    async def delete_dispatch(
        self, req: DeleteAgentDispatchRequest, claims: Claims
    ) -> AgentDispatch:
        """The dispatch goes and its agent leaves, ending the call it was on."""
        require_room_admin(claims, req.room)
        room = self._world.rooms.get(req.room)
        dispatches = room.dispatches if room else []
        dispatch = next((d for d in dispatches if d.id == req.dispatch_id), None)
        if room is None or dispatch is None:
            raise TwirpError("not_found", f"dispatch {req.dispatch_id!r} not found")
        room.dispatches.remove(dispatch)
        for call in [c for c in room.calls if c.dispatch is dispatch]:
            call.hang_up("CLIENT_INITIATED")
        return dispatch

"""The simulated LiveKit rooms: their dispatches and calls. A room is created by CreateRoom,
CreateDispatch or CreateSIPParticipant, closes by itself when its last call is over (as a
LiveKit room empties), and is deleted by DeleteRoom, which hangs its calls up at once."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from livekit.protocol.agent_dispatch import AgentDispatch
from livekit.protocol.models import ParticipantInfo, Room

from batchctl.sim.calls import Call
from batchctl.sim.context import SimContext


@dataclass
class SimRoom:
    name: str
    metadata: str = ""
    sid: str = field(default_factory=lambda: f"RM_{secrets.token_hex(6)}")
    created_at: float = field(default_factory=time.time)
    dispatches: list[AgentDispatch] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def participants(self) -> list[ParticipantInfo]:
        """The callees on the phone and the agents in the room."""
        callees = [c.participant for c in self.calls if c.in_room and c.participant]
        return callees + [c.agent for c in self.calls if c.agent is not None]

    def to_proto(self) -> Room:
        return Room(
            sid=self.sid,
            name=self.name,
            metadata=self.metadata,
            creation_time=int(self.created_at),
            creation_time_ms=int(self.created_at * 1000),
            num_participants=len(self.participants()),
        )


class World:
    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self.rooms: dict[str, SimRoom] = {}

    def room(self, name: str, metadata: str = "") -> SimRoom:
        """The room called ``name``, created if need be (as LiveKit does on a dispatch)."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = SimRoom(name, metadata)
            self._ctx.notify("room_started", room.to_proto())
        return room

    def delete(self, name: str) -> bool:
        """DeleteRoom: every call in it ends now, and its agents report nothing more."""
        room = self.rooms.pop(name, None)
        self._ctx.stats.room_deleted(name, existed=room is not None)
        if room is None:
            return False
        for call in room.calls:
            call.hang_up()
        self._ctx.notify("room_finished", room.to_proto())
        return True

    def call_done(self, call: Call) -> None:
        """The room closes once its last call is over (unless DeleteRoom got there first)."""
        room = call.room
        if call in room.calls:
            room.calls.remove(call)
        if not room.calls and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._ctx.notify("room_finished", room.to_proto())

    def close(self) -> list[asyncio.Task[None]]:
        """Simulator shutdown: stops every call without a word to the database; returns the
        cancelled tasks, to be awaited."""
        stopped = [task for room in self.rooms.values() for c in room.calls for task in c.stop()]
        self.rooms.clear()
        return stopped

"""``livekit.RoomService``: CreateRoom, ListRooms, DeleteRoom, ListParticipants, with LiveKit's
grants (``roomCreate`` to create and delete, ``roomList`` to list, ``roomAdmin`` of the room for
its participants) and its ``not_found`` for a room that does not exist."""

from __future__ import annotations

from livekit.protocol.models import Room
from livekit.protocol.room import (
    CreateRoomRequest,
    DeleteRoomRequest,
    DeleteRoomResponse,
    ListParticipantsRequest,
    ListParticipantsResponse,
    ListRoomsRequest,
    ListRoomsResponse,
)

from batchctl.sim.auth import Claims, require_room_admin, require_video
from batchctl.sim.rooms import World
from batchctl.sim.twirp import Method, TwirpError

SERVICE = "livekit.RoomService"
NO_SUCH_ROOM = "requested room does not exist"


class RoomService:
    def __init__(self, world: World) -> None:
        self._world = world

    def methods(self) -> dict[str, Method]:
        return {
            f"{SERVICE}/CreateRoom": Method(CreateRoomRequest, self.create_room),
            f"{SERVICE}/ListRooms": Method(ListRoomsRequest, self.list_rooms),
            f"{SERVICE}/DeleteRoom": Method(DeleteRoomRequest, self.delete_room),
            f"{SERVICE}/ListParticipants": Method(ListParticipantsRequest, self.list_participants),
        }

    async def create_room(self, req: CreateRoomRequest, claims: Claims) -> Room:
        require_video(claims, "roomCreate")
        if not req.name:
            raise TwirpError("invalid_argument", "name is required")
        return self._world.room(req.name, req.metadata).to_proto()

    async def list_rooms(self, req: ListRoomsRequest, claims: Claims) -> ListRoomsResponse:
        require_video(claims, "roomList")
        rooms = self._world.rooms
        names = list(req.names) or list(rooms)
        return ListRoomsResponse(rooms=[rooms[n].to_proto() for n in names if n in rooms])

    async def delete_room(self, req: DeleteRoomRequest, claims: Claims) -> DeleteRoomResponse:
        """Ends every call in the room at once; their agents report nothing more."""
        require_video(claims, "roomCreate")
        if not self._world.delete(req.room):
            raise TwirpError("not_found", NO_SUCH_ROOM)
        return DeleteRoomResponse()

    async def list_participants(
        self, req: ListParticipantsRequest, claims: Claims
    ) -> ListParticipantsResponse:
        require_room_admin(claims, req.room)
        room = self._world.rooms.get(req.room)
        if room is None:
            raise TwirpError("not_found", NO_SUCH_ROOM)
        return ListParticipantsResponse(participants=room.participants())

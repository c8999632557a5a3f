"""Request authentication as LiveKit does it: ``authorization: Bearer <JWT>``, HS256 signed with
the API secret, ``iss`` = the API key; then each method checks its grant (``video`` or ``sip``
claims, camelCase, as livekit-api's AccessToken writes them)."""

from __future__ import annotations

from typing import Any

import jwt

from batchctl.config import LiveKitCredentials
from batchctl.sim.twirp import TwirpError

Claims = dict[str, Any]
LEEWAY_S = 60  # clock skew LiveKit tolerates as well


def verify(authorization: str | None, credentials: LiveKitCredentials) -> Claims:
    """The token's claims, or TwirpError unauthenticated (401)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise TwirpError("unauthenticated", "invalid authorization header: expected Bearer <JWT>")
    try:
        claims: Claims = jwt.decode(
            token,
            credentials.api_secret,
            algorithms=["HS256"],
            issuer=credentials.api_key,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iss"]},
        )
    except jwt.InvalidTokenError as exc:
        raise TwirpError("unauthenticated", f"invalid token: {exc}") from exc
    return claims


def require_video(claims: Claims, grant: str) -> None:
    """A room-level grant such as ``roomCreate`` or ``roomList``."""
    if not claims.get("video", {}).get(grant):
        raise TwirpError("permission_denied", f"permissions denied: the token lacks video.{grant}")


def require_room_admin(claims: Claims, room: str) -> None:
    """``roomAdmin`` for exactly this room, as LiveKit's EnsureAdminPermission."""
    video = claims.get("video", {})
    if not video.get("roomAdmin") or video.get("room", "") != room:
        raise TwirpError(
            "permission_denied", f"permissions denied: the token lacks video.roomAdmin for {room!r}"
        )


def require_sip_call(claims: Claims) -> None:
    if not claims.get("sip", {}).get("call"):
        raise TwirpError("permission_denied", "permissions denied: the token lacks sip.call")

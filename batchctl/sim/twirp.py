"""Twirp errors as LiveKit sends them: JSON ``{"code", "msg", "meta"}`` with the HTTP status
Twirp assigns to the code (livekit-api raises ServerError(code, msg, status, meta) from it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

# https://twitchtv.github.io/twirp/docs/spec_v7.html#error-codes
HTTP_STATUS: dict[str, int] = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}


class TwirpError(Exception):
    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown Twirp error code {code!r}")
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.meta = meta or {}

    def response(self) -> web.Response:
        body: dict[str, object] = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta  # Twirp metadata values are strings
        return web.json_response(body, status=HTTP_STATUS[self.code])


class GarbledReply(Exception):
    """A handler's way to answer 200 with a body that is no protobuf message (a scenario fault:
    the client fails to decode it)."""

    BODY = b"\x0a\x7ftruncated"  # field 1 claims 127 bytes that never come


@dataclass(frozen=True)
class Method:
    """A Twirp method: its request message type and the handler, which gets the decoded request
    and the caller's token claims and returns the reply message."""

    request: type[Message]
    handler: Callable[[Any, dict[str, Any]], Awaitable[Message]]

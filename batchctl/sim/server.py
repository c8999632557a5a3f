"""The simulator's HTTP server: LiveKit's Twirp API on 127.0.0.1, plus ``GET /sim/stats``.

Twirp: ``POST /twirp/<package>.<Service>/<Method>``, ``Content-Type: application/protobuf``, the
serialized request as body (possibly empty); 200 with the serialized reply, or a Twirp JSON
error. Any other path is ``bad_route`` (404).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from google.protobuf.message import DecodeError

from batchctl.config import ConfigError, LiveKitCredentials
from batchctl.sim.auth import verify
from batchctl.sim.carrier import Carrier
from batchctl.sim.context import SimContext
from batchctl.sim.dispatch_service import AgentDispatchService
from batchctl.sim.reports import Reporter
from batchctl.sim.room_service import RoomService
from batchctl.sim.rooms import World
from batchctl.sim.scenario import Scenario
from batchctl.sim.sip_service import SipService
from batchctl.sim.stats import SimStats
from batchctl.sim.twirp import GarbledReply, Method, TwirpError
from batchctl.sim.webhooks import WebhookSender

log = logging.getLogger(__name__)

TWIRP_PREFIX = "/twirp/"
PROTOBUF = "application/protobuf"
MIN_SECRET_BYTES = 32  # LiveKit refuses shorter secrets, and so does HS256 practice
# How long stop() lets requests in flight finish (a stalled CreateDispatch, a ringing SIP call).
SHUTDOWN_TIMEOUT_S = 1.0


def banner(url: str) -> str:
    return f"LiveKit SIMULATOR (not a real LiveKit server) listening on {url}"


class Simulator:
    """A LiveKit simulator for batchctl: start() it in a running event loop, stop() it there."""

    def __init__(
        self,
        *,
        credentials: LiveKitCredentials,
        database_url: str,
        scenario: Scenario | None = None,
        webhook_url: str | None = None,
    ) -> None:
        secret_bytes = len(credentials.api_secret.encode())
        if secret_bytes < MIN_SECRET_BYTES:
            raise ConfigError(
                f"LiveKit API secret must be at least {MIN_SECRET_BYTES} bytes, "
                f"got {secret_bytes} (LIVEKIT_API_SECRET)"
            )
        self.scenario = scenario or Scenario()
        self.stats = SimStats()
        self._credentials = credentials
        self._database_url = database_url
        self._webhook_url = webhook_url or self.scenario.webhook_url
        self._runner: web.AppRunner | None = None
        self._world: World | None = None
        self._ctx: SimContext | None = None
        self.url = ""

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        announce: Callable[[str], object] = log.warning,
    ) -> str:
        """Serves on ``host:port`` (0: a free port), announces that this is a simulator and
        where (a warning in the log unless the caller prints it), and returns the URL."""
        webhooks = None
        if self._webhook_url:
            webhooks = WebhookSender(self._webhook_url, self._credentials, self.stats)
            webhooks.start()
        reporter = Reporter(self._database_url, self.stats, self.scenario.report_give_up_s)
        await reporter.open()
        carrier = Carrier(self.scenario.carrier, self.stats)
        self._ctx = SimContext(self.scenario, self.stats, reporter, webhooks, carrier)
        self._world = World(self._ctx)
        methods = {
            **AgentDispatchService(self._ctx, self._world).methods(),
            **RoomService(self._world).methods(),
            **SipService(self._ctx, self._world).methods(),
        }

        async def twirp(request: web.Request) -> web.StreamResponse:
            return await self._twirp(request, methods)

        app = web.Application()
        app.router.add_get("/sim/stats", self._stats)
        app.router.add_route("*", "/{path:.*}", twirp)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        announce(banner(self.url))
        return self.url

    async def stop(self) -> None:
        if self._world is not None:
            stopped = self._world.close()
            if stopped:
                await asyncio.wait(stopped, timeout=SHUTDOWN_TIMEOUT_S)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._ctx is not None:
            if self._ctx.webhooks is not None:
                await self._ctx.webhooks.close()
            await self._ctx.reporter.close()

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot().to_json())

    async def _twirp(self, request: web.Request, methods: dict[str, Method]) -> web.StreamResponse:
        path = request.path.removeprefix(TWIRP_PREFIX)
        method = methods.get(path) if request.path.startswith(TWIRP_PREFIX) else None
        name = path.rpartition("/")[2] or request.path
        self.stats.request(name)
        try:
            if method is None or request.method != "POST":
                raise TwirpError("bad_route", f"no handler for {request.method} {request.path}")
            if request.content_type != PROTOBUF:
                raise TwirpError("bad_route", f"unexpected Content-Type {request.content_type!r}")
            claims = verify(request.headers.get("authorization"), self._credentials)
            try:
                message = method.request.FromString(await request.read())
            except DecodeError as exc:
                raise TwirpError("malformed", f"cannot decode the request: {exc}") from exc
            reply = await method.handler(message, claims)
        except TwirpError as exc:
            self.stats.error(name, exc.code)
            return exc.response()
        except GarbledReply:
            self.stats.error(name, "garbled")
            return web.Response(body=GarbledReply.BODY, content_type=PROTOBUF)
        return web.Response(body=reply.SerializeToString(), content_type=PROTOBUF)

"""The demo's webhook endpoint: a local HTTP server (aiohttp) that verifies each delivery's
Standard Webhooks signature and counts the events by type, so the demo can show what a tenant's
own server would have received."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import threading
from collections import Counter
from types import TracebackType

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

HOST = "127.0.0.1"
PATH = "/hooks"


def new_secret() -> str:
    """A signing secret as batchctl generates them: whsec_ and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Receiver:
    """Runs in a thread with its own event loop, as aiosmtpd runs the mailbox: the demo itself
    is synchronous."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)
        # Bound here, so the port is known (and ours) before the endpoint is registered.
        self._socket = socket.socket()
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}{PATH}"
        self.counts: Counter[str] = Counter()
        self.rejected = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._socket.close()

    @property
    def received(self) -> int:
        return sum(self.counts.values())

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:
            event = self._webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            with self._lock:
                self.rejected += 1
            return web.Response(status=401, text="bad signature")
        with self._lock:
            # Delivery is at least once: a resent event keeps its webhook-id, count it once.
            message_id = request.headers["webhook-id"]
            if message_id not in self._seen:
                self._seen.add(message_id)
                self.counts[str(event["type"])] += 1
        return web.Response(status=204)

"""``batchctl webhook``: receive LiveKit webhooks and record the call outcomes they carry."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from batchctl.cli.context import AppContext
from batchctl.cli.options import livekit_credentials
from batchctl.client.aio import AsyncClient
from batchctl.config import LiveKitCredentials
from batchctl.database import async_pool
from batchctl.webhook import Webhooks, serve


@click.command()
@livekit_credentials
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8089, show_default=True)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="seconds an event that ends a call waits for the voice agent's own, richer report",
)
@click.pass_obj
def webhook(
    app: AppContext, credentials: LiveKitCredentials, host: str, port: int, grace: float
) -> None:
    """Serve LiveKit's webhook endpoint (/livekit/webhook) until SIGTERM/SIGINT.

    Point LiveKit's webhook URL here: SIP participants joining and leaving and rooms closing
    become call reports, so a call whose voice agent died still gets its outcome."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(app.database_url(), credentials, host, port, grace))


async def _serve(
    database_url: str, credentials: LiveKitCredentials, host: str, port: int, grace: float
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with async_pool(database_url, "webhook", max_size=4) as pool:
        await serve(Webhooks(AsyncClient(pool), credentials, grace=grace), host, port, stopping)

"""``batchctl daemon``: the outside-world I/O of batchctl (SPEC §7), nothing else.

One LISTEN connection wakes five loops that share a connection pool: dispatch (claim ->
LiveKit -> acknowledge), hang-up (delete rooms the database queued), report (build and mail
finished batches' workbooks), webhook (send the deliveries the transitions queued) and, unless
cron does it, the sweep. Every decision is the
database's; several daemons on several hosts may run against one database at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from psycopg_pool import AsyncConnectionPool

from batchctl.client.aio import AsyncClient
from batchctl.config import ConfigError, LiveKitSettings, SmtpSettings
from batchctl.daemon.deliveries import DeliveryLoop
from batchctl.daemon.dispatcher import Dispatcher
from batchctl.daemon.hangups import HangupLoop
from batchctl.daemon.listener import listen
from batchctl.daemon.loop import run_loop
from batchctl.database import async_pool
from batchctl.livekit import LiveKitGateway
from batchctl.report.outbox import send_due_reports

log = logging.getLogger(__name__)


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DaemonSettings:
    database_url: str
    livekit: LiveKitSettings
    smtp: SmtpSettings
    listen_url: str | None = None  # a direct connection for LISTEN (the pool may go via PgBouncer)
    listen: bool = True  # False: poll only (no connection that can carry LISTEN)
    worker: str = field(default_factory=default_worker_name)
    poll_interval: float = 2.0  # seconds; covers missed notifications and retries falling due
    claim_limit: int = 50
    lease_seconds: int = 60
    sweep_every: float = 30.0  # seconds; 0 leaves the sweep to cron / pg_cron
    drain_timeout: float = 40.0  # on SIGTERM: a sip dial rings for up to ~30 s
    livekit_timeout: float = 10.0  # seconds per LiveKit request (a sip dial: its ring window)
    pool_size: int = 10
    # Webhook URLs may point at loopback, private and link-local addresses, over http (tests,
    # the demo, a receiver on the owner's own network); off, a tenant cannot reach them.
    allow_private_webhooks: bool = False
    webhook_timeout: float = 10.0  # seconds per webhook request, its answer read included


async def run_daemon(settings: DaemonSettings, stopping: asyncio.Event) -> None:
    """Runs until ``stopping`` is set, then finishes what it has in hand and returns."""
    agent = settings.livekit.agent_name
    if not agent:
        raise ConfigError("the daemon needs an agent to dispatch (LIVEKIT_AGENT_NAME)")
    pool = async_pool(settings.database_url, "daemon", max_size=settings.pool_size)
    await pool.open(wait=False)
    try:
        async with (
            LiveKitGateway(settings.livekit, request_timeout=settings.livekit_timeout) as gateway,
            # No proxy from the environment: webhooks go to the addresses the sender checked.
            aiohttp.ClientSession(trust_env=False) as session,
        ):
            await _run_loops(settings, pool, gateway, session, agent, stopping)
    finally:
        await pool.close()


async def _run_loops(
    settings: DaemonSettings,
    pool: AsyncConnectionPool,
    gateway: LiveKitGateway,
    session: aiohttp.ClientSession,
    agent: str,
    stopping: asyncio.Event,
) -> None:
    client = AsyncClient(pool)
    wake = {name: asyncio.Event() for name in ("dispatch", "hangup", "report", "sweep", "webhook")}
    dispatcher = Dispatcher(
        client,
        gateway,
        wake["dispatch"],
        worker=settings.worker,
        default_agent=agent,
        claim_limit=settings.claim_limit,
        lease_seconds=settings.lease_seconds,
    )
    hangups = HangupLoop(client, gateway, worker=settings.worker)
    deliveries = DeliveryLoop(
        client, session, wake["webhook"], worker=settings.worker,
        allow_private=settings.allow_private_webhooks, timeout_s=settings.webhook_timeout,
    )  # fmt: skip

    async def send_reports() -> float | None:
        return await send_due_reports(pool, settings.smtp, settings.worker, stopping)

    async def sweep() -> float | None:
        log.debug("sweep: %s", await client.sweep())
        return None

    steps: dict[str, tuple[Callable[[], Awaitable[float | None]], float]] = {
        "dispatch": (dispatcher.step, settings.poll_interval),
        "hangup": (hangups.step, settings.poll_interval),
        "webhook": (deliveries.step, settings.poll_interval),
        "report": (send_reports, max(settings.poll_interval, 10.0)),
    }
    if settings.sweep_every > 0:
        steps["sweep"] = (sweep, settings.sweep_every)
    channels = {
        f"batchctl_{name}": wake[name] for name in ("dispatch", "hangup", "report", "webhook")
    }
    listener = asyncio.create_task(
        listen(settings.listen_url or settings.database_url, channels, stopping)
        if settings.listen
        else stopping.wait()
    )
    loops = [
        asyncio.create_task(run_loop(name, step, wake[name], stopping, interval), name=name)
        for name, (step, interval) in steps.items()
    ]
    log.info("daemon %s running (%s mode, agent %s)", settings.worker, gateway.settings.mode, agent)
    await stopping.wait()
    log.info("stopping: finishing the work in hand")
    await asyncio.gather(*loops)  # each loop ends after its current step
    await asyncio.gather(
        dispatcher.drain(settings.drain_timeout), deliveries.drain(settings.drain_timeout)
    )
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    log.info("daemon %s stopped", settings.worker)

"""``batchctl daemon``: dispatch, hang up, report (and sweep) until SIGTERM/SIGINT. The options'
defaults are DaemonSettings'."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from batchctl.cli.context import AppContext
from batchctl.cli.options import livekit_options, smtp_options
from batchctl.config import ConfigError, LiveKitSettings, SmtpSettings
from batchctl.daemon import DaemonSettings, default_worker_name, run_daemon


@click.command()
@livekit_options
@smtp_options
@click.option(
    "--listen-url",
    envvar="BATCHCTL_LISTEN_URL",
    metavar="URL",
    show_envvar=True,
    help="direct database URL for LISTEN when the main URL goes through a transaction-mode "
    "pooler  [default: the database URL]",
)
@click.option(
    "--listen/--no-listen",
    default=DaemonSettings.listen,
    show_default=True,
    help="wake on NOTIFY; --no-listen polls only (every --poll-interval)",
)
@click.option("--worker", default=default_worker_name, help="name in claims  [default: host:pid]")
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.05),
    default=DaemonSettings.poll_interval,
    show_default=True,
)
@click.option(
    "--sweep-every",
    type=click.FloatRange(0),
    default=DaemonSettings.sweep_every,
    show_default=True,
    help="seconds between sweeps run by the daemon; 0 when cron or pg_cron runs batchctl.sweep()",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.IntRange(1),
    default=DaemonSettings.lease_seconds,
    show_default=True,
    help="seconds a claim is held before the sweep returns it (a dead daemon's entries)",
)
@click.option(
    "--livekit-timeout",
    type=click.FloatRange(0.1),
    default=DaemonSettings.livekit_timeout,
    show_default=True,
    help="seconds to wait for a LiveKit request (a timed-out dispatch is retried and adopted)",
)
@click.option(
    "--allow-private-webhooks",
    is_flag=True,
    envvar="BATCHCTL_ALLOW_PRIVATE_WEBHOOKS",
    show_envvar=True,
    help="let webhook endpoints be loopback, private or link-local addresses, and http "
    "(tests, the demo, a receiver on your own network); tenants choose the URLs",
)
@click.option(
    "--webhook-timeout",
    type=click.FloatRange(0.1),
    default=DaemonSettings.webhook_timeout,
    show_default=True,
    help="seconds to wait for a webhook receiver's answer; a delivery is leased for twice that "
    "and 5 s, then another daemon may send it again",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO")
@click.pass_obj
def daemon(
    app: AppContext,
    livekit: LiveKitSettings,
    smtp: SmtpSettings,
    listen_url: str | None,
    listen: bool,
    worker: str,
    poll_interval: float,
    sweep_every: float,
    lease_seconds: int,
    livekit_timeout: float,
    allow_private_webhooks: bool,
    webhook_timeout: float,
    log_level: str,
) -> None:
    """Dial through LiveKit, hang up, e-mail reports, send webhooks: the daemon (several may run
    at once)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = DaemonSettings(
        database_url=app.database_url(),
        livekit=livekit,
        smtp=smtp,
        listen_url=listen_url,
        listen=listen,
        worker=worker,
        poll_interval=poll_interval,
        sweep_every=sweep_every,
        lease_seconds=lease_seconds,
        livekit_timeout=livekit_timeout,
        allow_private_webhooks=allow_private_webhooks,
        webhook_timeout=webhook_timeout,
    )
    try:
        asyncio.run(_until_signalled(settings))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


async def _until_signalled(settings: DaemonSettings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await run_daemon(settings, stopping)

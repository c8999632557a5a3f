"""``batchctl sim``: the LiveKit simulator (batchctl.sim) as a standalone server."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from batchctl.cli.context import AppContext
from batchctl.cli.options import livekit_credentials
from batchctl.config import ConfigError, LiveKitCredentials
from batchctl.sim import Scenario, ScenarioError, Simulator


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=7880, show_default=True, help="Port (0: any free port).")
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario JSON (see examples/scenario.json); default: built-in outcomes.",
)
@click.option("--webhook-url", metavar="URL", help="POST signed LiveKit webhooks here.")
@livekit_credentials
@click.pass_obj
def sim(
    app: AppContext,
    host: str,
    port: int,
    scenario_file: Path | None,
    webhook_url: str | None,
    credentials: LiveKitCredentials,
) -> None:
    """Run a LiveKit SIMULATOR (not LiveKit) whose voice agents report to the database."""
    try:
        scenario = Scenario.load(scenario_file) if scenario_file else Scenario()
        simulator = Simulator(
            credentials=credentials,
            database_url=app.database_url(),
            scenario=scenario,
            webhook_url=webhook_url,
        )
    except (ScenarioError, ConfigError) as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(simulator, host, port))


async def _serve(simulator: Simulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start(host, port, announce=click.echo)
    try:
        await stop.wait()
    finally:
        await simulator.stop()

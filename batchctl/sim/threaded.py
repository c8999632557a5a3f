"""A simulator on a thread of its own, for callers that are not asyncio programs (tests,
benchmarks, the demo): it serves over HTTP like LiveKit while the caller reads its records.

    with run_simulator(database_url, scenario, credentials) as sim:
        ... LiveKitAPI(sim.url, key, secret) ...
        sim.stats().live_calls
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from batchctl.config import LiveKitCredentials
from batchctl.sim.scenario import Scenario
from batchctl.sim.server import Simulator
from batchctl.sim.stats import StatsSnapshot

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningSimulator:
    url: str
    credentials: LiveKitCredentials
    scenario: Scenario
    simulator: Simulator

    @property
    def api_key(self) -> str:
        return self.credentials.api_key

    @property
    def api_secret(self) -> str:
        return self.credentials.api_secret

    def stats(self) -> StatsSnapshot:
        return self.simulator.stats.snapshot()


@contextmanager
def run_simulator(
    database_url: str,
    scenario: Scenario | None,
    credentials: LiveKitCredentials,
    *,
    webhook_url: str | None = None,
    port: int = 0,
) -> Iterator[RunningSimulator]:
    """Serves on 127.0.0.1:``port`` (0: a free one) until the block ends."""
    simulator = Simulator(
        credentials=credentials,
        database_url=database_url,
        scenario=scenario,
        webhook_url=webhook_url,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="livekit-simulator", daemon=True)
    thread.start()
    try:
        starting = simulator.start(port=port)
        url = asyncio.run_coroutine_threadsafe(starting, loop).result(START_TIMEOUT_S)
        try:
            yield RunningSimulator(url, credentials, simulator.scenario, simulator)
        finally:
            asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result(START_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()

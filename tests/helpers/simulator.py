"""The LiveKit simulator for tests (batchctl.sim.threaded with the tests' credentials):

with run_simulator(db_url, Scenario.from_dict({...})) as sim:
    ... LiveKitAPI(sim.url, sim.api_key, sim.api_secret) ...
    wait_until(lambda: sim.stats().live_calls == 0)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from batchctl.config import LiveKitCredentials
from batchctl.sim import Scenario
from batchctl.sim.threaded import RunningSimulator
from batchctl.sim.threaded import run_simulator as run_in_thread

API_KEY = "batchctl-test-key"
API_SECRET = "batchctl-test-secret-0123456789abcdef"  # >= 32 bytes, as LiveKit requires

__all__ = [
    "API_KEY",
    "API_SECRET",
    "RunningSimulator",
    "assert_one_dispatch_per_attempt",
    "run_simulator",
]


@contextmanager
def run_simulator(
    database_url: str,
    scenario: Scenario | None = None,
    *,
    webhook_url: str | None = None,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
    port: int = 0,
) -> Iterator[RunningSimulator]:
    credentials = LiveKitCredentials(api_key, api_secret)
    with run_in_thread(
        database_url, scenario, credentials, webhook_url=webhook_url, port=port
    ) as sim:
        yield sim


def assert_one_dispatch_per_attempt(sim: RunningSimulator, conn: psycopg.Connection[Any]) -> None:
    """Every call log had exactly one CreateDispatch at LiveKit, and no dispatch is without one:
    nobody dialled an attempt twice, however many daemons raced for it."""
    rooms = {r["room_name"] for r in conn.execute("select room_name from batchctl.call_logs")}
    per_room = sim.stats().dispatches_per_room
    assert set(per_room) == rooms, "a dispatch without a call log, or a call log without one"
    assert set(per_room.values()) == {1}, {r: n for r, n in per_room.items() if n != 1}

"""A dashboard on a thread of its own, for callers that are not asyncio programs (the demo, the
tests):

    with run_dashboard(settings) as board:
        ... open board.url in a browser ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from batchctl.dashboard.app import DashboardSettings, build_app, start
from batchctl.dashboard.context import DASHBOARD
from batchctl.dashboard.live import LiveHub

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RunningDashboard:
    url: str  # http://host:port, no trailing slash
    hub: LiveHub


@contextmanager
def run_dashboard(
    settings: DashboardSettings, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningDashboard]:
    """Serves on host:``port`` (0: a free one) until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        app = build_app(settings)
        runner, bound = asyncio.run_coroutine_threadsafe(start(app, host, port), loop).result(
            TIMEOUT_S
        )
        try:
            yield RunningDashboard(f"http://{host}:{bound}", app[DASHBOARD].hub)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT_S)
        loop.close()

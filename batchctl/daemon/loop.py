"""The shape every daemon loop shares: run a step, then sleep until woken, due, or the poll
timer fires; back off while the database or LiveKit is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# A step returns when it wants to run again: 0 at once (more work is waiting), a number of
# seconds (something falls due then), or None (when woken, or at the next poll).
Step = Callable[[], Awaitable[float | None]]


async def wait_for_any(events: list[asyncio.Event], timeout: float) -> None:
    """Returns when one of ``events`` is set or ``timeout`` seconds have passed."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_loop(
    name: str, step: Step, wake: asyncio.Event, stopping: asyncio.Event, poll_interval: float
) -> None:
    """Runs ``step`` until ``stopping`` is set; a step in progress is always finished.

    Notifications only wake the loop (they can be missed: a lost connection, a second daemon
    that took the work), so it also polls. A failing step is logged and retried with a
    growing delay; the daemon keeps running through outages.
    """
    failures = 0
    while not stopping.is_set():
        wake.clear()  # a wake-up arriving during the step is kept for the next round
        try:
            delay = await step()
            failures = 0
        except Exception:
            failures += 1
            delay = min(30.0, 0.25 * 2**failures)
            log.exception(
                "%s: step failed (%d in a row), retrying in %.1f s", name, failures, delay
            )
        if delay == 0:
            continue
        await wait_for_any(
            [wake, stopping], poll_interval if delay is None else min(delay, poll_interval)
        )

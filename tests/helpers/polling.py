"""Waiting in tests for something another thread or process does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "",
    details: Callable[[], object] | None = None,
) -> Any:
    """Polls ``predicate`` until it is truthy and returns that value; fails the test after
    ``timeout`` seconds, with ``details()`` (say, a daemon's log) in the message when given."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            message = f"timed out after {timeout} s waiting for {what or predicate}"
            raise AssertionError(message if details is None else f"{message}\n{details()}")
        time.sleep(interval)
    return value

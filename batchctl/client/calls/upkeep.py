"""The timeouts (sql/060) and retention (sql/065)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from batchctl.client.calls import Call, scalar


def sweep(now: datetime | None = None) -> Call[dict[str, Any]]:
    """What it did, per kind of timeout. ``now``: sweep as of then (the tests' clock)."""
    if now is None:  # the function's default, its own transaction's time
        return scalar("SELECT batchctl.sweep()")
    return scalar("SELECT batchctl.sweep(%s)", now)


def prune(older_than: timedelta, limit: int = 10_000) -> Call[dict[str, Any]]:
    """What it deleted, per table, and whether more is left."""
    return scalar("SELECT batchctl.prune(%s, %s)", older_than, limit)

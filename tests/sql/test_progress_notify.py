"""batchctl_progress: at most one per batch in 100 ms while counters change, and always on a
status change (sql/030_batch_triggers.sql)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import psycopg

from sqlapi import SqlApi, phones

INTERVAL_S = 0.1


def _drain(listener: psycopg.Connection[Any], timeout: float) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=timeout)]


def test_a_busy_batch_notifies_progress_at_most_once_per_interval(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant(max_concurrent_calls=300)
    batch = api.create_batch(tenant, phones(300))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen batchctl_progress")
        started = time.monotonic()
        calls = api.dispatch_all(limit=300)  # 1 claim + 300 acknowledgements
        changes = 1 + len(calls)
        for call in calls:
            api.report(call, "ended")
            changes += 1
            if time.monotonic() - started > 5 * INTERVAL_S and changes > 100:
                break
        elapsed = time.monotonic() - started
        notified = _drain(listener, timeout=0.3)
    assert set(notified) <= {str(batch)}
    # Each interval may start one notification (+2 for the windows at either end).
    assert len(notified) <= elapsed / INTERVAL_S + 2, (len(notified), changes, elapsed)
    assert len(notified) < changes / 4, (len(notified), changes, elapsed)


def _quiet_progress(conn: psycopg.Connection[Any], batch: UUID) -> None:
    """As if the batch had just notified, for ever: only what always notifies still does."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")  # no triggers
        conn.execute(
            "update batchctl.batches set progress_notified_at = 'infinity' where id = %s", (batch,)
        )


def test_status_changes_and_the_finish_notify_progress_whatever_the_interval(
    db_url: str, api: SqlApi
) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("listen batchctl_progress")
        _quiet_progress(api.conn, batch)
        calls = api.dispatch_all()
        api.report(calls[0], "ended")
        assert _drain(listener, timeout=0.3) == [], "counter changes inside the interval"

        api.pause_batch(tenant, batch)
        assert _drain(listener, timeout=0.3) == [str(batch)]
        api.resume_batch(tenant, batch)
        assert _drain(listener, timeout=0.3) == [str(batch)]

        _quiet_progress(api.conn, batch)
        api.report(calls[1], "ended")  # the last entry: the batch completes and finishes
        assert api.batch_status(tenant, batch)["finished_at"] is not None
        assert _drain(listener, timeout=0.3) == [str(batch)]

"""Checks the SQL-level tests share: snapshots of every row (to show a rejected call changed
nothing), counters as batch_status() reports them, and the rows a scenario left behind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from batchctl.statuses import ENTRY_STATUSES

Conn = psycopg.Connection[dict[str, Any]]

TABLES = (
    "tenants",
    "dnc_numbers",
    "batches",
    "batch_entries",
    "call_logs",
    "events",
    "reports",
    "hangups",
    "intake_refusals",
    "trunks",
    "caller_ids",
    "caller_id_days",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
)
REPORT_TO = {"report_to": ["ops@example.com"]}


def later(**delta: float) -> datetime:
    """A moment ahead of the server's clock (same host), for sweep(p_now)."""
    return datetime.now(UTC) + timedelta(**delta)


def all_rows(conn: Conn) -> dict[str, list[str]]:
    """Every row of every table as text: equal snapshots mean nothing changed, not even a
    timestamp (row counts, as in test_validation, would miss an UPDATE)."""
    return {
        table: [
            r["row"]
            for r in conn.execute(
                f"select to_jsonb(x)::text as row from batchctl.{table} x order by 1"
            ).fetchall()
        ]
        for table in TABLES
    }


def rejected(conn: Conn, sqlstate: str, call: Callable[[], Any], *needles: str) -> str:
    """Runs call, expects it to raise sqlstate with a message containing every needle, and to
    have changed no row; returns the message."""
    before = all_rows(conn)
    with pytest.raises(psycopg.Error) as exc:
        call()
    message = str(exc.value)
    assert exc.value.sqlstate == sqlstate, (exc.value.sqlstate, message)
    for needle in needles:
        assert needle in message, (needle, message)
    assert all_rows(conn) == before, "a rejected call changed the database"
    return message


def entries_of(conn: Conn, batch_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        """select id, to_phone, status::text as status, outcome::text as outcome, last_error,
                  attempts, retry_count, call_log_id
             from batchctl.batch_entries where batch_id = %s order by entry_index""",
        (batch_id,),
    ).fetchall()


def call_status(conn: Conn, call_id: UUID) -> str:
    row = conn.execute(
        "select status::text as s from batchctl.call_logs where id = %s", (call_id,)
    ).fetchone()
    assert row is not None
    return row["s"]


def counts(status: dict[str, Any]) -> dict[str, int]:
    """The per-entry-status counters and pending of a batch_status() answer."""
    return {k: status[k] for k in (*ENTRY_STATUSES, "pending")}


def tally(**nonzero: int) -> dict[str, int]:
    """Expected counters: zero except the ones named; pending derived as SPEC §3 defines it."""
    out = {s: nonzero.get(s, 0) for s in ENTRY_STATUSES}
    out["pending"] = out["queued"] + out["running"] + out["dispatched"]
    return out


def real_counts(conn: Conn, batch_id: UUID) -> dict[str, int]:
    """The same figures counted from the entry rows, not from the counters under test."""
    seen = Counter(e["status"] for e in entries_of(conn, batch_id))
    return tally(**seen)


def report_rows(conn: Conn, batch_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        """select status::text as status, recipients, attempts, last_error
             from batchctl.reports where batch_id = %s""",
        (batch_id,),
    ).fetchall()


def enum_values(conn: Conn, type_name: str) -> list[str]:
    row = conn.execute(f"select enum_range(null::batchctl.{type_name})::text[] as v").fetchone()
    assert row is not None
    return row["v"]

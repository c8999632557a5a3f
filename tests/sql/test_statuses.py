"""batchctl.statuses spells the database's status enums, in their order."""

from __future__ import annotations

from typing import Any

import psycopg

from batchctl.statuses import BATCH_STATUSES, ENTRY_STATUSES


def test_the_python_statuses_are_the_enums(conn: psycopg.Connection[dict[str, Any]]) -> None:
    found = conn.execute(
        """select enum_range(null::batchctl.batch_status)::text[] as batch,
                  enum_range(null::batchctl.entry_status)::text[] as entry"""
    ).fetchone()
    assert found == {"batch": list(BATCH_STATUSES), "entry": list(ENTRY_STATUSES)}

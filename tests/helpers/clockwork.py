"""Steps of the compliance tests (tests/sql/test_jurisdictions.py, test_policies.py): the
claim's clock pinned (batchctl.clock() honours the batchctl.now setting of a superuser's
session: these tests'), entries and the events that held them back, and calls made "at" the
pinned time."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from checks import Conn
from pgtools import one_value
from sqlapi import SqlApi


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pin(conn: Conn, at: str | datetime) -> None:
    """The claim's clock reads ``at`` from now on (this session)."""
    conn.execute("select set_config('batchctl.now', %s::timestamptz::text, false)", (str(at),))


def clock(conn: Conn) -> datetime:
    value: datetime = one_value(conn, "select batchctl.clock()")
    return value


def entry(conn: Conn, to_phone: str, batch_id: UUID | None = None) -> dict[str, Any]:
    """The entry of ``to_phone`` (in ``batch_id``, when the number is in several batches)."""
    row = conn.execute(
        """select id, status::text as status, region, country, subdivisions, last_error,
                  nullif(next_attempt_at, '-infinity') as next_attempt_at  -- due: None
             from batchctl.batch_entries
            where to_phone = %s and (%s::uuid is null or batch_id = %s::uuid)""",
        (to_phone, batch_id, batch_id),
    ).fetchone()
    assert row is not None
    return row


def reasons(conn: Conn, entry_id: UUID) -> list[str]:
    rows = conn.execute(
        """select reason from batchctl.events where object = 'entry' and object_id = %s
              and from_status = 'queued' and to_status = 'queued'
            order by id""",
        (entry_id,),
    ).fetchall()
    return [r["reason"] for r in rows]


def claimed(api: SqlApi) -> list[str]:
    return sorted(c.to_phone for c in api.claim())


def call_now(api: SqlApi, outcome: str = "ended") -> list[str]:
    """Claims what may be dialled at the pinned time and makes each call then (a call log's
    times follow the claim's clock): dialled, answered and ended with ``outcome``. Returns the
    numbers called."""
    called = []
    for c in api.claim():
        call_id = api.mark_dispatched(c.entry_id, c.room_name, f"dispatch-{c.room_name}")
        api.finish_call(call_id, outcome)
        called.append(c.to_phone)
    return sorted(called)

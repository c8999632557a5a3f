"""The invariants every scenario must leave intact. Checked from outside, with plain SQL over the
tables, so they do not trust the triggers they are checking."""

from __future__ import annotations

from typing import Any

import psycopg

ENTRY_STATUSES = ("queued", "running", "dispatched", "completed", "failed", "declined", "cancelled")


def violations(conn: psycopg.Connection) -> list[str]:
    problems: list[str] = []

    def rows(sql: str) -> list[Any]:
        return conn.execute(sql).fetchall()

    counter_cols = ", ".join(f"b.{s}_count" for s in ENTRY_STATUSES)
    real_cols = ", ".join(f"count(e.id) filter (where e.status = '{s}')" for s in ENTRY_STATUSES)
    for row in rows(
        f"""select b.id, b.total, array[{counter_cols}] as counters,
                   array[{real_cols}] as real, count(e.id) as n
              from batchctl.batches b left join batchctl.batch_entries e on e.batch_id = b.id
             group by b.id"""
    ):
        r = _as_tuple(row)
        if list(r[2]) != list(r[3]) or r[1] != r[4] or sum(r[2]) != r[1]:
            problems.append(f"batch {r[0]}: counters {r[2]} total {r[1]} but real {r[3]} of {r[4]} entries")

    for row in rows(
        """select t.id, t.max_concurrent_calls, count(e.id)
             from batchctl.tenants t join batchctl.batch_entries e on e.tenant_id = t.id
            where e.status in ('running', 'dispatched')
            group by t.id having count(e.id) > t.max_concurrent_calls"""
    ):
        problems.append(f"tenant {_as_tuple(row)[0]}: {_as_tuple(row)[2]} in flight over cap {_as_tuple(row)[1]}")

    for row in rows(
        """select b.id, (b.options->>'wave_size')::int, count(e.id)
             from batchctl.batches b join batchctl.batch_entries e on e.batch_id = b.id
            where e.status in ('running', 'dispatched')
            group by b.id having count(e.id) > (b.options->>'wave_size')::int"""
    ):
        problems.append(f"batch {_as_tuple(row)[0]}: {_as_tuple(row)[2]} in flight over wave size {_as_tuple(row)[1]}")

    for row in rows(
        """select to_phone, count(*) from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id
            where c.status in ('in_queue', 'ringing', 'ongoing') group by e.tenant_id, to_phone having count(*) > 1"""
    ):
        problems.append(f"number {_as_tuple(row)[0]} has {_as_tuple(row)[1]} live calls at once")

    for row in rows(
        """select e.id, e.status, c.status from batchctl.batch_entries e join batchctl.call_logs c on c.id = e.call_log_id
            where (e.status = 'dispatched') <> (c.status in ('in_queue', 'ringing', 'ongoing'))"""
    ):
        r = _as_tuple(row)
        problems.append(f"entry {r[0]} is {r[1]} but its current call is {r[2]}")

    for row in rows(
        """select b.id, b.status, b.finished_at, b.queued_count + b.running_count + b.dispatched_count as pending,
                  (select count(*) from batchctl.reports r where r.batch_id = b.id) as reports
             from batchctl.batches b"""
    ):
        bid, status, finished_at, pending, reports = _as_tuple(row)
        terminal = status in ("completed", "cancelled", "failed")
        if (finished_at is not None) != (terminal and pending == 0):
            problems.append(f"batch {bid}: status {status}, pending {pending}, finished_at {finished_at}")
        if reports != (1 if finished_at is not None else 0):
            problems.append(f"batch {bid}: {reports} report rows, finished_at {finished_at}")
        if status in ("running", "paused") and pending == 0:
            problems.append(f"batch {bid}: {status} with nothing pending")

    # Every status an entry, call or batch holds is where its event trail leads.
    # (events are indexed by (batch_id, object_id): the look-up names both.)
    for table, obj, batch_col in (
        ("batch_entries", "entry", "batch_id"),
        ("call_logs", "call", "batch_id"),
        ("batches", "batch", "id"),
    ):
        for row in rows(
            f"""select x.id, x.status::text, last.to_status
                  from batchctl.{table} x
                  left join lateral (select ev.to_status from batchctl.events ev
                                      where ev.batch_id = x.{batch_col} and ev.object_id = x.id
                                        and ev.object = '{obj}' and not ev.ignored
                                      order by ev.id desc limit 1) last on true
                 where coalesce(last.to_status, case when '{obj}' = 'entry' then 'queued' end) is distinct from x.status::text"""
        ):
            r = _as_tuple(row)
            problems.append(f"{obj} {r[0]} is {r[1]} but its last event says {r[2]}")
    # Nothing leaves a terminal status: no recorded transition starts from one.
    for row in rows(
        """select object, object_id, from_status, to_status from batchctl.events
            where not ignored and (
                  (object = 'entry' and from_status in ('completed', 'failed', 'declined', 'cancelled'))
               or (object = 'batch' and from_status in ('completed', 'cancelled', 'failed'))
               or (object = 'call' and from_status not in ('in_queue', 'ringing', 'ongoing')))"""
    ):
        r = _as_tuple(row)
        problems.append(f"{r[0]} {r[1]} left terminal status {r[2]} for {r[3]}")
    return problems


def assert_invariants(conn: psycopg.Connection) -> None:
    found = violations(conn)
    assert not found, "invariants violated:\n" + "\n".join(found[:50])


def _as_tuple(row: Any) -> tuple[Any, ...]:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)

"""The invariants every scenario must leave intact. Checked from outside, with plain SQL over the
tables, so they do not trust the triggers they are checking. Each query returns one row per
violation, with a message."""

from __future__ import annotations

from typing import Any

import psycopg

from batchctl.statuses import ENTRY_STATUSES

_COUNTERS = ", ".join(f"b.{s}_count" for s in ENTRY_STATUSES)
_REAL_COUNTS = ", ".join(
    f"count(e.id) filter (where e.status = '{s}')::int" for s in ENTRY_STATUSES
)

# A call slot is taken by a claimed or dispatched entry, and by a queued one whose dispatch is
# unconfirmed while it holds the slot (LiveKit may have its call).
_IN_FLIGHT = """(e.status in ('running', 'dispatched')
                 or (e.status = 'queued' and e.dispatch_unconfirmed
                     and e.slot_held_until > now()))"""

CHECKS: dict[str, str] = {
    "counters equal the real counts and sum to the total": f"""
        select format('batch %s: counters %s, total %s, but real %s of %s entries',
                      id, counters, total, real, n)
          from (select b.id, b.total, array[{_COUNTERS}] as counters,
                       array[{_REAL_COUNTS}] as real, count(e.id) as n
                  from batchctl.batches b
                  left join batchctl.batch_entries e on e.batch_id = b.id
                 group by b.id, b.tenant_id) x
         where counters <> real or total <> n""",
    "in flight never exceeds the tenant's cap": f"""
        select format('tenant %s: %s in flight, cap %s', t.id, count(*), t.max_concurrent_calls)
          from batchctl.tenants t join batchctl.batch_entries e on e.tenant_id = t.id
         where {_IN_FLIGHT}
         group by t.id having count(*) > t.max_concurrent_calls""",
    "in flight never exceeds the batch's wave size": f"""
        select format('batch %s: %s in flight, wave size %s', b.id, count(*),
                      b.options ->> 'wave_size')
          from batchctl.batches b join batchctl.batch_entries e on e.batch_id = b.id
         where {_IN_FLIGHT}
         group by b.id, b.tenant_id having count(*) > (b.options ->> 'wave_size')::int""",
    "in flight on a trunk never exceeds its max_concurrent": """
        select format('trunk %s: %s in flight, max_concurrent %s', t.name, count(*),
                      t.max_concurrent)
          from batchctl.trunks t join batchctl.batch_entries e on e.trunk_id = t.id
         where e.status in ('running', 'dispatched')
         group by t.id, t.tenant_id having count(*) > t.max_concurrent""",
    "no caller ID passes its daily cap (the least of its pool rows')": """
        select format('caller ID %s: %s calls on %s, cap %s', d.phone, d.calls, d.day, n.cap)
          from batchctl.caller_id_days d
          join (select tenant_id, phone, min(daily_cap) as cap from batchctl.caller_ids
                 group by tenant_id, phone) n on n.tenant_id = d.tenant_id and n.phone = d.phone
         where d.calls > n.cap""",
    "a webhook event is queued once per endpoint": """
        select format('endpoint %s has %s deliveries of %s', endpoint_id, count(*), message_id)
          from batchctl.webhook_deliveries
         group by endpoint_id, message_id having count(*) > 1""",
    "every audited webhook event has its delivery to each endpoint that was on": """
        select format('event %s (%s) has no delivery to endpoint %s', e.id, k.type, w.id)
          from batchctl.events e
         cross join lateral (
             select batchctl.webhook_event_type(e.object, e.from_status, e.to_status) as type) k
          join batchctl.webhook_endpoints w
            on w.tenant_id = e.tenant_id and w.disabled_at is null and e.at > w.created_at
           and (w.events is null or k.type = any (w.events))
         where not e.ignored and k.type is not null
           and not exists (select from batchctl.webhook_deliveries d
                            where d.endpoint_id = w.id and d.message_id = 'msg_' || e.id)""",
    "no number is on two live calls of one tenant": """
        select format('number %s has %s live calls', e.to_phone, count(*))
          from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id
         where c.status in ('in_queue', 'ringing', 'ongoing')
         group by e.tenant_id, e.to_phone having count(*) > 1""",
    "an entry is dispatched exactly while its current call is live": """
        select format('entry %s is %s but its current call is %s', e.id, e.status, c.status)
          from batchctl.batch_entries e join batchctl.call_logs c on c.id = e.call_log_id
         where (e.status = 'dispatched') <> (c.status in ('in_queue', 'ringing', 'ongoing'))""",
    "finished exactly when terminal with nothing pending, one report per finished batch": """
        select format('batch %s: %s, pending %s, finished_at %s, %s report rows',
                      b.id, b.status, pending, b.finished_at, reports)
          from batchctl.batches b
         cross join lateral (
             select b.queued_count + b.running_count + b.dispatched_count as pending,
                    (select count(*) from batchctl.reports r where r.batch_id = b.id) as reports
         ) x
         where (b.finished_at is not null)
               <> (b.status in ('completed', 'cancelled', 'failed') and pending = 0)
            or reports <> (b.finished_at is not null)::int
            or (b.status in ('running', 'paused') and pending = 0)""",
    "a live call of a stopped batch or a cancelled entry has its hang-up queued": """
        select format('call %s (%s) of a %s batch, cancel requested %s, has no hang-up',
                      c.id, c.status, b.status, e.cancel_requested)
          from batchctl.call_logs c
          join batchctl.batch_entries e on e.id = c.entry_id
          join batchctl.batches b on b.id = c.batch_id
         where c.status in ('in_queue', 'ringing', 'ongoing')
           and (b.status in ('cancelled', 'failed') or e.cancel_requested)
           and not exists (select 1 from batchctl.hangups h where h.room_name = c.room_name)""",
    "nothing leaves a terminal status": """
        select format('%s %s left terminal status %s for %s', object, object_id,
                      from_status, to_status)
          from batchctl.events
         where not ignored
           and ((object = 'entry' and from_status in ('completed', 'failed', 'declined',
                                                      'cancelled'))
             or (object = 'batch' and from_status in ('completed', 'cancelled', 'failed'))
             or (object = 'call' and from_status not in ('in_queue', 'ringing', 'ongoing')))""",
}

# Every status a row holds is where its event trail leads (entries start queued unrecorded).
# Events are indexed by (batch_id, object_id), so the look-up names both.
for _table, _object, _batch_col in (
    ("batch_entries", "entry", "batch_id"),
    ("call_logs", "call", "batch_id"),
    ("batches", "batch", "id"),
):
    CHECKS[f"every {_object} status change has its event"] = f"""
        select format('{_object} %s is %s but its last event says %s', x.id, x.status, last.s)
          from batchctl.{_table} x
          left join lateral (
              select ev.to_status as s from batchctl.events ev
               where ev.batch_id = x.{_batch_col} and ev.object_id = x.id
                 and ev.object = '{_object}' and not ev.ignored
               order by ev.id desc limit 1
          ) last on true
         where coalesce(last.s, case when '{_object}' = 'entry' then 'queued' end)
               is distinct from x.status::text"""


def violations(conn: psycopg.Connection[Any]) -> list[str]:
    found: list[str] = []
    for name, query in CHECKS.items():
        for row in conn.execute(query).fetchall():
            message = next(iter(row.values())) if isinstance(row, dict) else row[0]
            found.append(f"{name}: {message}")
    return found


def assert_invariants(conn: psycopg.Connection[Any]) -> None:
    found = violations(conn)
    assert not found, "invariants violated:\n" + "\n".join(found[:50])

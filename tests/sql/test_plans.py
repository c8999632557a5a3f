"""Query plans: the hot statements use their partial indexes of live rows, so their cost follows
the in-flight work and not the history; batch_status and the completion path never scan
batch_entries.

The database gets 20 000 finished entries (and their ended calls and events) of history in one
batch next to a few live ones, then ANALYZE; on that data a sequential scan would be the plan
without the partial indexes. The history is bulk-inserted with triggers off
(session_replication_role = replica) together with matching counters and events, so the
invariants still hold; the live rows are made through the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from invariants import assert_invariants
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones

HISTORY = 20_000

# The statements below are copied from the function bodies named above each one; {batch},
# {batches}, {tenant} and {entries} stand for the uuid / uuid[] / uuid / uuid[] the function has
# in a variable at that point. Keep them in step with sql/050_claim.sql,
# sql/060_sweep.sql and sql/044_batch_lifecycle.sql.
HOT_QUERIES: dict[str, tuple[str, set[str]]] = {
    # claim_entries: "is this number on a call already?", asked of every candidate.
    "claim_busy_probe": (
        """SELECT 1 FROM batchctl.batch_entries busy
            WHERE busy.tenant_id = {tenant} AND busy.to_phone = '+15550001234'
              AND (busy.status IN ('running', 'dispatched')
                   OR (busy.status = 'queued' AND busy.dispatch_unconfirmed AND NOT false))""",
        {"entries_busy_numbers"},
    ),
    # choose_claims (sql/050_claim.sql): the per-batch candidate scan in the LATERAL.
    "claim_candidates": (
        """SELECT e.id,
                  row_number() OVER (ORDER BY e.next_attempt_at, e.entry_index) AS rank_in_batch
             FROM batchctl.batch_entries e
            WHERE e.batch_id = {batch} AND e.status = 'queued' AND e.next_attempt_at <= now()
              AND ('null'::jsonb = 'null'
                   OR batchctl.in_call_window('null'::jsonb, coalesce(e.timezone, 'UTC'), now()))
            ORDER BY e.next_attempt_at, e.entry_index
            LIMIT 15""",
        {"entries_claimable"},
    ),
    # claim_entries: queued entries keeping the slot of an unconfirmed dispatch, per tenant.
    "claim_held": (
        """SELECT h.id FROM batchctl.batch_entries h
            WHERE h.tenant_id = {tenant} AND h.status = 'queued' AND h.dispatch_unconfirmed
              AND h.slot_held_until > now()""",
        {"entries_holding_slots"},
    ),
    # sweep() (sql/060_sweep.sql), its first step: expired leases, found, then re-queued.
    "sweep_leases": (
        """SELECT array_agg(e.id)
             FROM batchctl.batch_entries e
            WHERE e.status = 'running' AND e.lease_expires_at < now()""",
        {"entries_leased"},
    ),
    "sweep_leases_update": (
        """UPDATE batchctl.batch_entries
              SET status = 'queued', last_error = 'lease_expired', claimed_by = NULL,
                  lease_expires_at = NULL, dispatch_unconfirmed = true, updated_at = now()
            WHERE id = ANY ({entries}) AND status = 'running' AND lease_expires_at < now()""",
        {"batch_entries_pkey", "entries_leased"},
    ),
    # sweep() steps 2-4 (stuck_calls) run one generic plan: see the test of it below.
    # sweep() step 5: end_at passed.
    "sweep_expire": (
        """UPDATE batchctl.batch_entries
              SET status = 'cancelled', last_error = 'expired', updated_at = now()
            WHERE batch_id = ANY ({batches}) AND status = 'queued'""",
        {"entries_claimable"},
    ),
    # sweep() step 6: due entries outside their window.
    "sweep_defer": (
        """SELECT q.id FROM batchctl.batches b
             JOIN batchctl.tenants t ON t.id = b.tenant_id
             JOIN batchctl.batch_entries q ON q.batch_id = b.id AND q.tenant_id = b.tenant_id
            WHERE b.id = ANY ({batches}) AND q.status = 'queued' AND q.next_attempt_at <= now()""",
        {"entries_claimable"},
    ),
    # stop_batch (cancel_batch, sql/044_batch_lifecycle.sql): entries not yet dialling, then the
    # hang-up announcements of live calls.
    "cancel_entries": (
        """UPDATE batchctl.batch_entries
              SET status = 'cancelled', last_error = 'batch_cancelled', claimed_by = NULL,
                  lease_expires_at = NULL, updated_at = now()
            WHERE batch_id = {batch} AND tenant_id = {tenant}
              AND (status = 'queued' OR status = 'running')""",
        {"entries_claimable", "entries_in_flight", "entries_busy_numbers"},
    ),
    "cancel_hangups": (
        """SELECT pg_notify('batchctl_hangup', c.room_name)
             FROM batchctl.batch_entries e JOIN batchctl.call_logs c ON c.id = e.call_log_id
            WHERE e.batch_id = {batch} AND e.tenant_id = {tenant} AND e.status = 'dispatched'""",
        {"entries_in_flight"},
    ),
}
# Indexes that cover the whole history; the hot queries must not walk them.
HISTORY_INDEXES = {
    "batch_entries_batch_id_to_phone_tenant_id_key",
    "call_logs_by_batch",
    "call_logs_by_room",
    # The dashboard's (migration 0024).
    "entries_by_batch_index",
    "entries_finished_by_batch_index",
    "call_logs_by_batch_started",
    "call_logs_by_batch_ended",
}


def add_history(
    conn: psycopg.Connection[Any], batch_id: UUID, n: int, start: int = 1_000_000
) -> None:
    """n completed entries with ended calls and their events, triggers off, counters adjusted."""
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            """with b as (select id, tenant_id from batchctl.batches where id = %(b)s),
                    e as (select gen_random_uuid() as id, gen_random_uuid() as call_id, i
                            from generate_series(1, %(n)s) i),
                    ins_e as (
                        insert into batchctl.batch_entries
                               (id, batch_id, tenant_id, entry_index, to_phone, status, outcome,
                                attempts,
                                call_log_id, next_attempt_at)
                        select e.id, b.id, b.tenant_id, %(start)s + e.i,
                               '+1999' || lpad((%(start)s + e.i)::text, 8, '0'),
                               'completed', 'ended', 1, e.call_id, now() - interval '1 day'
                          from e, b returning 1),
                    ins_c as (
                        insert into batchctl.call_logs
                               (id, tenant_id, batch_id, entry_id, attempt, room_name, status,
                                ended_at,
                                status_changed_at, started_at, to_phone)
                        select e.call_id, b.tenant_id, b.id, e.id, 1, batchctl.room_name(e.id, 1),
                               'ended',
                               now() - interval '1 day', now() - interval '1 day',
                               now() - interval '1 day',
                               '+1999' || lpad((%(start)s + e.i)::text, 8, '0')
                          from e, b returning 1),
                    ins_ev as (
                        insert into batchctl.events
                               (tenant_id, batch_id, object, object_id, from_status, to_status,
                                reason)
                        select b.tenant_id, b.id, x.object, x.object_id, x.from_status, x.to_status,
                               'history'
                          from e, b, lateral (values ('entry', e.id, 'dispatched', 'completed'),
                                                     ('call', e.call_id, 'ongoing', 'ended'))
                                     x (object, object_id, from_status, to_status)
                        returning 1)
               update batchctl.batches
                  set total = total + %(n)s, completed_count = completed_count + %(n)s
                where id = %(b)s""",
            {"b": batch_id, "n": n, "start": start},
        )


@pytest.fixture
def big(conn: psycopg.Connection[Any]) -> Iterator[dict[str, Any]]:
    """A running batch with 20 000 finished entries and, live: 5 queued, 3 claimed (running),
    and calls in_queue, ringing and ongoing."""
    api = SqlApi(conn)
    tenant = api.create_tenant("big", 50)
    batch = api.create_batch(tenant, phones(11), {"wave_size": 6})
    claims = api.claim(limit=6)
    calls = [api.mark_dispatched(c.entry_id, c.room_name) for c in claims[:3]]
    api.report(calls[1], "ringing")
    api.report(calls[2], "ringing")
    api.report(calls[2], "ongoing")
    add_history(conn, batch, HISTORY)
    conn.execute(
        "analyze batchctl.batch_entries, batchctl.call_logs, batchctl.batches, batchctl.tenants"
    )
    yield {"api": api, "tenant": tenant, "batch": batch, "calls": calls}
    assert_counters(conn)


def assert_counters(conn: psycopg.Connection[Any]) -> None:
    """The counter invariant alone: invariants.assert_invariants also replays every object's
    event trail, which takes minutes over 20 000 entries of history."""
    rows = conn.execute(
        """select b.id from batchctl.batches b
            where b.total <> (select count(*) from batchctl.batch_entries e where e.batch_id = b.id)
               or b.completed_count <> (select count(*) from batchctl.batch_entries e
                                         where e.batch_id = b.id and e.status = 'completed')
               or b.queued_count + b.running_count + b.dispatched_count
                  <> (select count(*) from batchctl.batch_entries e where e.batch_id = b.id
                         and e.status in ('queued', 'running', 'dispatched'))"""
    ).fetchall()
    assert rows == []


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(conn: psycopg.Connection[Any], statement: str, batch: UUID) -> dict[str, Any]:
    tenant_id = one_value(conn, "select tenant_id from batchctl.batches where id = %s", (batch,))
    text = statement.format(
        batch=sql.Literal(str(batch)).as_string(conn) + "::uuid",
        batches=f"ARRAY[{sql.Literal(str(batch)).as_string(conn)}]::uuid[]",
        tenant=sql.Literal(str(tenant_id)).as_string(conn) + "::uuid",
        entries="ARRAY['00000000-0000-4000-8000-000000000000']::uuid[]",
    )
    value = one_value(conn, "EXPLAIN (FORMAT JSON) " + text)
    return value[0]["Plan"]


@pytest.mark.parametrize("name", list(HOT_QUERIES))
def test_hot_query_uses_partial_index(
    conn: psycopg.Connection[Any], big: dict[str, Any], name: str
) -> None:
    """Each hot statement reads batch_entries / call_logs through a partial index of live rows."""
    statement, wanted = HOT_QUERIES[name]
    plan = explain(conn, statement, big["batch"])
    nodes = list(plan_nodes(plan))
    seq = [
        n["Relation Name"]
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in ("batch_entries", "call_logs")
    ]
    used = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert not seq, f"{name}: sequential scan of {seq}: {plan}"
    assert used & wanted, f"{name}: uses {used}, expected one of {wanted}"
    assert not used & HISTORY_INDEXES, (
        f"{name}: walks a whole-history index {used & HISTORY_INDEXES}"
    )


def stuck_calls_plan(conn: psycopg.Connection[Any], body: str) -> list[dict[str, Any]]:
    """The generic plan of stuck_calls' body, as the function runs it."""
    statement = body.replace("p_status", "$1").replace("p_timeout_key", "$2").replace("p_now", "$3")
    conn.execute("deallocate all")
    conn.execute(f"prepare stuck (batchctl.call_status, text, timestamptz) as {statement}")
    conn.execute("set plan_cache_mode = force_generic_plan")
    value = one_value(
        conn, "explain (format json) execute stuck('ringing', 'ringing_timeout_s', now())"
    )
    conn.execute("reset plan_cache_mode")
    return list(plan_nodes(value[0]["Plan"]))


def test_sweep_finds_stuck_calls_with_one_generic_plan_on_the_live_index(
    conn: psycopg.Connection[Any], big: dict[str, Any]
) -> None:
    """stuck_calls (sweep steps 2-4) is planned once, generically: a plan made per call estimated
    status_changed_at by reading the ends of the index, which grow with the history. The generic
    plan must still read call_logs through call_logs_live, which the live statuses spelled out in
    the query allow; without them it could not (the control below)."""
    row = one_row(
        conn,
        """select prosrc, proconfig from pg_proc
            where oid = 'batchctl.stuck_calls(batchctl.call_status, text, timestamptz)'
                        ::regprocedure""",
    )
    assert "plan_cache_mode=force_generic_plan" in row["proconfig"]
    nodes = stuck_calls_plan(conn, row["prosrc"])
    assert not [n for n in nodes if n.get("Relation Name") == "call_logs" and "Index Name" not in n]
    assert {n.get("Index Name") for n in nodes} >= {"call_logs_live"}, nodes
    live_statuses = " AND c.status IN ('in_queue', 'ringing', 'ongoing')"
    assert live_statuses in row["prosrc"]
    control = stuck_calls_plan(conn, row["prosrc"].replace(live_statuses, ""))
    assert "call_logs_live" not in {n.get("Index Name") for n in control}, control


def test_history_would_otherwise_be_scanned(
    conn: psycopg.Connection[Any], big: dict[str, Any]
) -> None:
    """Control: without the partial indexes the same statements read the whole history, so the
    plan checks above are meaningful."""
    with conn.transaction():
        for index in (
            "entries_claimable",
            "entries_leased",
            "entries_in_flight",
            "entries_busy_numbers",
        ):
            conn.execute(f"drop index batchctl.{index}")
        for name in ("sweep_leases", "claim_candidates", "cancel_entries"):
            nodes = list(plan_nodes(explain(conn, HOT_QUERIES[name][0], big["batch"])))
            history_wide = [
                n
                for n in nodes
                if (n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "batch_entries")
                or n.get("Index Name") in HISTORY_INDEXES
                or n.get("Index Name") == "batch_entries_pkey"
            ]
            assert history_wide, (name, nodes)
        raise psycopg.Rollback()
    assert conn.execute(
        "select to_regclass('batchctl.entries_leased') is not null as ok"
    ).fetchone()["ok"]


Stats = dict[str, int]


def entry_reads(conn: psycopg.Connection[Any]) -> Stats:
    row = conn.execute(
        """select seq_scan, coalesce(seq_tup_read, 0) as seq_tup_read,
                  coalesce(idx_scan, 0) as idx_scan,
                  coalesce(idx_tup_fetch, 0) as idx_tup_fetch
             from pg_stat_xact_user_tables
            where schemaname = 'batchctl' and relname = 'batch_entries'"""
    ).fetchone()
    assert row is not None
    return dict(row)


def delta(after: Stats, before: Stats) -> Stats:
    return {k: after[k] - before[k] for k in after}


def test_batch_status_does_not_read_entries(
    conn: psycopg.Connection[Any], big: dict[str, Any]
) -> None:
    """batch_status on a 20 010-entry batch does not touch batch_entries at all."""
    api: SqlApi = big["api"]
    with conn.transaction():
        before = entry_reads(conn)
        for _ in range(5):
            st = api.batch_status(big["tenant"], big["batch"])
        after = entry_reads(conn)
    assert st["total"] == HISTORY + 11 and st["completed"] == HISTORY
    assert delta(after, before) == {
        "seq_scan": 0,
        "seq_tup_read": 0,
        "idx_scan": 0,
        "idx_tup_fetch": 0,
    }


def _one_live_call(api: SqlApi, name: str, phone_start: int) -> tuple[UUID, UUID]:
    """A batch whose single entry has an answered call; returns (batch, call)."""
    tenant = api.create_tenant(name, 5)
    batch = api.create_batch(tenant, phones(1, phone_start), {"report_to": ["a@example.com"]})
    (call,) = api.dispatch_all()
    api.report(call, "ringing")
    api.report(call, "ongoing")
    return batch, call


def _final_report_reads(conn: psycopg.Connection[Any], batch: UUID, call: UUID) -> Stats:
    """Reads of batch_entries by the last call's final report, which completes its batch."""
    api = SqlApi(conn)
    with conn.transaction():
        before = entry_reads(conn)
        assert api.report(call, "ended") == "completed"
        after = entry_reads(conn)
    row = one_row(
        conn, "select status::text as s, finished_at from batchctl.batches where id = %s", (batch,)
    )
    assert row["s"] == "completed" and row["finished_at"] is not None
    return delta(after, before)


def test_completion_cost_does_not_grow_with_batch_size(conn: psycopg.Connection[Any]) -> None:
    """The final report of a 20 001-entry batch reads batch_entries exactly as much as that of a
    1-entry batch in the same database (its own entry), never by scanning."""
    api = SqlApi(conn)
    small_batch, small_call = _one_live_call(api, "small", 9000)
    large_batch, large_call = _one_live_call(api, "large", 9500)
    add_history(conn, large_batch, HISTORY)
    conn.execute("analyze batchctl.batch_entries, batchctl.call_logs, batchctl.batches")
    small = _final_report_reads(conn, small_batch, small_call)
    large = _final_report_reads(conn, large_batch, large_call)
    assert small["seq_scan"] == large["seq_scan"] == 0, (small, large)
    # Plan caching makes the exact counts differ by a few; growth with the history would not.
    assert large["seq_tup_read"] == small["seq_tup_read"] == 0, (small, large)
    assert large["idx_tup_fetch"] <= max(small["idx_tup_fetch"], 10), (small, large)
    assert_counters(conn)


def test_cancel_of_a_large_batch_is_fast(conn: psycopg.Connection[Any]) -> None:
    """cancel_batch of a batch with 10 000 queued entries finishes within a few seconds
    (the entry trigger's guard must not join its transition tables row by row)."""
    import time

    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    entries = [{"to_phone": f"+1415{i:07d}"} for i in range(10_000)]
    batch = api.create_batch(tenant, entries)
    t0 = time.monotonic()
    with conn.transaction():
        conn.execute("set local statement_timeout = '10s'")
        assert api.cancel_batch(tenant, batch) == 10_000
    elapsed = time.monotonic() - t0
    assert elapsed < 5, f"cancel_batch of 10 000 entries took {elapsed:.1f} s"
    assert_invariants(conn)


# The rules every transition evaluates (sql/010, and the report check in sql/054) are meant to be
# inlined into the statements that use them; a body PostgreSQL will not inline (a SET clause, or
# an IMMUTABLE function calling a STABLE one such as an enum's input) becomes a function call per
# row, and nothing else would notice.
INLINED_RULES = [
    "batchctl.entry_status_for_call(s)",
    "batchctl.call_transition_allowed(s, s)",
    "batchctl.is_terminal(s)",
    "batchctl.call_report_problem(s::text, '{}'::jsonb)",
    "batchctl.entry_transition_allowed(e, e)",
    "batchctl.batch_transition_allowed(b, b)",
    "batchctl.room_name(u, 1)",
    "batchctl.current_reason()",
    "batchctl.call_log_id(r)",
    "batchctl.is_e164(r)",  # create_batch's check of every entry
    "batchctl.entry_problem(r, r, r, '{}'::jsonb, r, true, null, r, now(), r, true)",  # all of it
    "batchctl.applied_jurisdictions('{}'::jsonb, '{}')",  # the claim's, per entry
    "batchctl.on_holiday('{}'::date[], 'UTC', now())",
    "batchctl.json_problem('{}'::jsonb, 10)",
    "batchctl.call_report_problem('ended', '{\"duration_seconds\": 1}'::jsonb)",
]
ROW = """(values ('ended'::batchctl.call_status, 'queued'::batchctl.entry_status,
                 'running'::batchctl.batch_status, gen_random_uuid(), 'batchctl-x-1'))
         v (s, e, b, u, r)"""


@pytest.mark.parametrize("call", INLINED_RULES)
def test_transition_rules_are_inlined(conn: psycopg.Connection[Any], call: str) -> None:
    rows = conn.execute(f"explain (verbose, costs off) select {call} from {ROW}").fetchall()
    plan = "\n".join(next(iter(row.values())) for row in rows)
    name = call.split("(")[0]
    assert name not in plan, f"{name} is called, not inlined:\n{plan}"


def test_entry_ids_follow_creation_order_where_the_server_has_uuidv7(
    conn: psycopg.Connection[Any],
) -> None:
    """Migration 0010: a new batch's entries go in at the right edge of the primary key."""
    row = conn.execute("select to_regprocedure('pg_catalog.uuidv7()') is not null as v7").fetchone()
    if not (row and row["v7"]):
        pytest.skip("uuidv7() is PostgreSQL 18's")
    api = SqlApi(conn)
    batch = api.create_batch(api.create_tenant(), phones(300))
    ids = [
        r["id"]
        for r in conn.execute(
            "select id from batchctl.batch_entries where batch_id = %s order by entry_index",
            (batch,),
        )
    ]
    assert len(ids) == 300
    assert {i.version for i in ids} == {7}
    assert ids == sorted(ids)


def test_the_limits_on_a_number_are_inlined_into_the_claim(conn: psycopg.Connection[Any]) -> None:
    """contact_wait (sql/029) is read for each candidate of a claim: inlined, it is one probe
    of call_logs_by_number, not a function call with its own plan."""
    rows = conn.execute(
        """explain (verbose, costs off)
           select * from (values (gen_random_uuid(), '+14155550100')) v (t, p),
                lateral batchctl.contact_wait(v.t, v.p, '{"frequency": {"per_24h": 3}}',
                                              '{US}', now())"""
    ).fetchall()
    plan = "\n".join(next(iter(row.values())) for row in rows)
    assert "contact_wait" not in plan, plan
    assert "call_logs_by_number" in plan, plan

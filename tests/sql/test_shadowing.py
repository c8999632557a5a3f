"""No object a caller creates can change what a batchctl function reads or writes (SPEC §8).

PostgreSQL searches the session's temporary schema first for tables and types unless a
function's search_path names ``pg_temp`` itself; every batchctl function therefore pins
``batchctl, pg_catalog, pg_temp`` (or is a SQL-standard body, bound when it was created). The
first test checks that of every function in the schema; the second creates a temporary twin of
every batchctl table and runs a whole campaign through every function in that session: every
write must land in the real tables and every read come from them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from invariants import assert_invariants
from sqlapi import SqlApi, phones

PINNED = ["search_path=batchctl, pg_catalog, pg_temp"]


def test_every_function_pins_its_search_path_with_pg_temp_last(
    conn: psycopg.Connection[Any],
) -> None:
    rows = conn.execute(
        """select p.oid::regprocedure::text as name, p.proconfig, p.prosqlbody is not null as bound
             from pg_proc p where p.pronamespace = 'batchctl'::regnamespace"""
    ).fetchall()
    assert len(rows) > 50, "the schema's functions were not found"
    unpinned = [
        (r["name"], r["proconfig"])
        for r in rows
        if not r["bound"]
        and [c for c in r["proconfig"] or [] if c.startswith("search_path=")] != PINNED
    ]
    assert not unpinned, f"functions that look names up in the caller's path: {unpinned}"


def _shadow_every_table(conn: psycopg.Connection[Any]) -> list[str]:
    """A temporary table of the same name and shape as each batchctl table, left empty."""
    tables = [
        r["relname"]
        for r in conn.execute(
            """select relname from pg_class
                where relnamespace = 'batchctl'::regnamespace and relkind in ('r', 'p')"""
        )
    ]
    for table in tables:
        conn.execute(
            sql.SQL("create temporary table {} (like batchctl.{} including defaults)").format(
                sql.Identifier(table), sql.Identifier(table)
            )
        )
    return tables


def test_temporary_tables_named_like_batchctl_tables_change_nothing(
    conn: psycopg.Connection[Any],
) -> None:
    """A campaign through every function, in a session whose pg_temp holds an empty twin of
    every table: the twins stay empty, and the real tables hold exactly the campaign."""
    shadows = _shadow_every_table(conn)
    assert {"batches", "batch_entries", "call_logs", "events", "dnc_numbers", "reports"} <= set(
        shadows
    )
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 2)
    api.add_dnc(tenant, "+14155550000")
    batch = api.create_batch(
        tenant, phones(4), {"report_to": ["ops@example.com"], "report_delay_s": 0}
    )
    assert api.add_entries(tenant, batch, phones(1, 10)) == 1
    status = api.batch_status(tenant, batch)
    assert (status["total"], status["dnc_skipped"]) == (4, 1), status

    claims = api.claim(limit=10)
    assert len(claims) == 2  # the cap, read from the real tenant row
    first, second = claims
    call = api.mark_dispatched(first.entry_id, first.room_name, "AD_1")
    [(second_call, _)] = api.mark_dispatched_many([(second.entry_id, second.room_name)])
    assert second_call is not None
    assert api.report(call, "ringing") == "dispatched"
    assert api.report_many([(call, "ongoing"), (second_call, "busy")]) == ["dispatched", "declined"]
    assert api.report(call, "ended", {"summary": "ok"}) == "completed"
    [third] = api.claim(limit=1)
    assert api.mark_dispatch_failed(third.entry_id, "livekit 503", True) == "queued"
    api.pause_batch(tenant, batch)
    api.resume_batch(tenant, batch)
    [fourth] = api.claim(limit=1)
    live = api.mark_dispatched(fourth.entry_id, fourth.room_name)
    assert api.cancel_entry(tenant, fourth.entry_id) is False
    api.sweep()
    [hangup] = api.claim_hangups()
    api.hangup_done(hangup["room_name"])
    assert conn.execute(
        "select status::text from batchctl.call_logs where id = %s", (live,)
    ).fetchone() == {"status": "cancelled"}
    api.cancel_batch(tenant, batch, "done")
    assert api.batch_status(tenant, batch)["status"] == "cancelled"
    report = api.claim_report()
    assert report is not None and report["batch_id"] == batch
    api.report_sent(batch)
    summary = conn.execute(
        "select total, completed from batchctl.report_summary(%s)", (batch,)
    ).fetchone()
    assert summary == {"total": 4, "completed": 1}

    for table in shadows:
        rows = conn.execute(
            sql.SQL("select count(*) as n from pg_temp.{}").format(sql.Identifier(table))
        ).fetchone()
        assert rows == {"n": 0}, f"a function wrote to the temporary {table}"
    real = conn.execute(
        """select (select count(*) from batchctl.batches) as batches,
                  (select count(*) from batchctl.dnc_numbers) as dnc,
                  (select count(*) from batchctl.reports where status = 'sent') as reports,
                  (select count(*) from batchctl.events where batch_id = %s) > 0 as events""",
        (batch,),
    ).fetchone()
    assert real == {"batches": 1, "dnc": 1, "reports": 1, "events": True}
    assert_invariants(conn)

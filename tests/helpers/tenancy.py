"""Two tenants' worth of rows for the tenancy tests (tests/sql/test_tenancy.py, and through
PgBouncer tests/deploy/test_pgbouncer.py), and who sees which of them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from checks import TABLES
from sqlapi import SqlApi, phones

RELATIONS = (*TABLES, "batch_overview", "report_entries", "report_calls")

Tenant = dict[str, Any]


def populate_tenant(api: SqlApi, name: str, phone_start: int) -> Tenant:
    """A tenant with a DNC number, a trunk with a caller ID, a webhook endpoint, a finished
    batch (with a report and a lead row refused at its intake) and a running one with a live
    call and a cancelled call's hang-up, their webhook deliveries and an attempt: a row in
    every table."""
    tenant = api.create_tenant(name, 5)
    api.add_dnc(tenant, f"+1999555{phone_start:04d}")
    endpoint = api.add_webhook(tenant, f"https://hooks.example.com/{name}")["endpoint_id"]
    trunk = api.create_trunk(tenant, "main", f"ST_{name.replace('-', '_')}", 5)
    assert api.add_caller_ids(tenant, trunk, [f"+1305555{phone_start:04d}"], 100) == 1
    done = api.create_batch(tenant, phones(2, phone_start), {"wave_size": 2})
    # As `batch create --skip-invalid` records a row it left out.
    refused = {"line": 4, "to_phone": "555", "problem": f"column phone: {name}'s bad row"}
    assert api.record_intake_refusals(tenant, done, [refused]) == 1
    for call in api.dispatch_all(limit=2):
        api.finish_call(call)
    running = api.create_batch(tenant, phones(3, phone_start + 10), {"wave_size": 2})
    calls = api.dispatch_all(limit=5)
    assert len(calls) == 2
    entries = [
        r["id"]
        for r in api.conn.execute(
            "select id from batchctl.batch_entries where batch_id = %s order by entry_index",
            (running,),
        )
    ]
    assert api.cancel_entry(tenant, entries[1]) is False  # live: its room is queued for hang-up
    # As the daemon records an attempt (record_webhook_attempt).
    api.conn.execute(
        """insert into batchctl.webhook_attempts (tenant_id, delivery_id, attempt, status_code)
           select tenant_id, id, 1, 500 from batchctl.webhook_deliveries
            where tenant_id = %s order by id limit 1""",
        (tenant,),
    )
    return {
        "tenant": tenant,
        "done": done,
        "running": running,
        "call": calls[0],
        "entry": entries[0],
        "trunk": trunk,
        "endpoint": UUID(endpoint),
    }


def tenant_ids_in(conn: psycopg.Connection[Any], relation: str) -> set[UUID]:
    col = "id" if relation == "tenants" else "tenant_id"
    rows = conn.execute(
        sql.SQL("select distinct {} as t from batchctl.{}").format(
            sql.Identifier(col), sql.Identifier(relation)
        )
    ).fetchall()
    return {r["t"] for r in rows}

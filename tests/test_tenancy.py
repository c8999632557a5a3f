"""Tenancy: row-level security for the tenant role, tenant checks in the functions, and the
separation of the tenant role from the worker's functions and from the tables.

The tests switch the (superuser) test connection to the tenant role with SET ROLE, which is
what a login role granted batchctl_tenant gets; RLS applies because the role owns no table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from invariants import assert_invariants
from sqlapi import SqlApi, phones

TABLES = ("tenants", "dnc_numbers", "batches", "batch_entries", "call_logs", "events", "reports")
RELATIONS = (*TABLES, "batch_overview")


def _populate(api: SqlApi, name: str, phone_start: int) -> dict[str, Any]:
    """A tenant with a DNC number, a finished batch (with a report) and a running one with a
    live call: a row in every table."""
    tenant = api.create_tenant(name, 5)
    api.add_dnc(tenant, f"+1999555{phone_start:04d}")
    done = api.create_batch(tenant, phones(2, phone_start), {"wave_size": 2})
    for call in api.dispatch_all(limit=2):
        api.finish_call(call)
    running = api.create_batch(tenant, phones(3, phone_start + 10), {"wave_size": 1})
    calls = api.dispatch_all(limit=5)
    assert len(calls) == 1
    entry = api.conn.execute(
        "select id from batchctl.batch_entries where batch_id = %s order by entry_index limit 1",
        (running,),
    ).fetchone()
    return {
        "tenant": tenant,
        "done": done,
        "running": running,
        "call": calls[0],
        "entry": _val(entry),
    }


def _val(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


@pytest.fixture
def two_tenants(conn: psycopg.Connection[Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    api = SqlApi(conn)
    a = _populate(api, "tenant-a", 0)
    b = _populate(api, "tenant-b", 100)
    yield a, b
    conn.execute("reset role")
    conn.execute("reset batchctl.tenant_id")
    assert_invariants(conn)


def as_tenant(conn: psycopg.Connection[Any], tenant: UUID | None) -> None:
    conn.execute("set role batchctl_tenant")
    if tenant is None:
        conn.execute("reset batchctl.tenant_id")
    else:
        conn.execute(sql.SQL("set batchctl.tenant_id = {}").format(sql.Literal(str(tenant))))


def tenant_ids_in(conn: psycopg.Connection[Any], relation: str) -> set[UUID]:
    col = "id" if relation == "tenants" else "tenant_id"
    rows = conn.execute(
        sql.SQL("select distinct {} as t from batchctl.{}").format(
            sql.Identifier(col), sql.Identifier(relation)
        )
    ).fetchall()
    return {r["t"] for r in rows}


@pytest.mark.parametrize("relation", RELATIONS)
def test_tenant_role_sees_only_its_rows(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]], relation: str
) -> None:
    """With batchctl.tenant_id = A, every table and the overview view show A's rows only."""
    a, b = two_tenants
    assert tenant_ids_in(conn, relation) == {a["tenant"], b["tenant"]}  # superuser: both
    as_tenant(conn, a["tenant"])
    assert tenant_ids_in(conn, relation) == {a["tenant"]}
    as_tenant(conn, b["tenant"])
    assert tenant_ids_in(conn, relation) == {b["tenant"]}


def test_tenant_role_sees_a_whole_scenario_of_its_own(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Tenant A's session sees all of A's rows (not merely some) and none of B's by id."""
    a, b = two_tenants
    expected = {
        t: _val(
            conn.execute(
                sql.SQL("select count(*) from batchctl.{} where {} = %s").format(
                    sql.Identifier(t), sql.Identifier("id" if t == "tenants" else "tenant_id")
                ),
                (a["tenant"],),
            ).fetchone()
        )
        for t in TABLES
    }
    as_tenant(conn, a["tenant"])
    for t in TABLES:
        assert (
            _val(
                conn.execute(
                    sql.SQL("select count(*) from batchctl.{}").format(sql.Identifier(t))
                ).fetchone()
            )
            == expected[t]
            > 0
        ), t
    assert (
        conn.execute("select * from batchctl.batches where id = %s", (b["running"],)).fetchone()
        is None
    )
    assert (
        conn.execute("select * from batchctl.call_logs where id = %s", (b["call"],)).fetchone()
        is None
    )
    overview = conn.execute(
        "select batch_id, report_status::text as r from batchctl.batch_overview"
    ).fetchall()
    assert {r["batch_id"] for r in overview} == {a["done"], a["running"]}
    assert {r["r"] for r in overview} == {"skipped", None}


@pytest.mark.parametrize("relation", RELATIONS)
def test_tenant_role_without_setting_sees_nothing(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]], relation: str
) -> None:
    """With the setting unset (reset, or empty) the tenant role sees no rows at all."""
    as_tenant(conn, None)
    assert tenant_ids_in(conn, relation) == set()
    conn.execute("set batchctl.tenant_id = ''")
    assert tenant_ids_in(conn, relation) == set()


def test_fresh_tenant_session_without_setting_sees_nothing(
    db_url: str, two_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """A new session that never set batchctl.tenant_id sees nothing in any relation."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        c.execute("set role batchctl_tenant")
        for relation in RELATIONS:
            assert tenant_ids_in(c, relation) == set(), relation


def test_tenant_functions_with_another_tenants_id_raise_bc002(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Setting says A: every tenant function called with B's tenant id (or B's objects) is BC002."""
    a, b = two_tenants
    as_tenant(conn, a["tenant"])
    api = SqlApi(conn)
    calls: list[tuple[str, Any]] = [
        ("create_batch", lambda: api.create_batch(b["tenant"], phones(1, 500))),
        ("add_dnc", lambda: api.add_dnc(b["tenant"], "+14155550999")),
        ("start_batch", lambda: api.start_batch(b["tenant"], b["running"])),
        ("pause_batch", lambda: api.pause_batch(b["tenant"], b["running"])),
        ("resume_batch", lambda: api.resume_batch(b["tenant"], b["running"])),
        ("cancel_batch", lambda: api.cancel_batch(b["tenant"], b["running"])),
        ("cancel_entry", lambda: api.cancel_entry(b["tenant"], b["entry"])),
        ("batch_status", lambda: api.batch_status(b["tenant"], b["running"])),
        # A's own tenant id but B's objects: not found either.
        ("pause_batch(A, B's batch)", lambda: api.pause_batch(a["tenant"], b["running"])),
        ("cancel_batch(A, B's batch)", lambda: api.cancel_batch(a["tenant"], b["running"])),
        ("cancel_entry(A, B's entry)", lambda: api.cancel_entry(a["tenant"], b["entry"])),
        ("batch_status(A, B's batch)", lambda: api.batch_status(a["tenant"], b["running"])),
    ]
    for name, call in calls:
        with pytest.raises(psycopg.Error) as exc:
            call()
        assert exc.value.sqlstate == "BC002", (name, exc.value.sqlstate, str(exc.value))
        assert "not found" in str(exc.value), name
    # A's own calls work under the tenant role.
    assert api.batch_status(a["tenant"], a["running"])["status"] == "running"
    new = api.create_batch(a["tenant"], phones(1, 700), {"autostart": False})
    api.cancel_batch(a["tenant"], new)
    conn.execute("reset role")
    conn.execute("reset batchctl.tenant_id")
    st = SqlApi(conn).batch_status(b["tenant"], b["running"])
    assert st["status"] == "running" and st["dispatched"] == 1 and st["queued"] == 2


def test_tenant_role_without_setting_cannot_act_for_any_tenant(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """A tenant session that forgot the setting cannot read or cancel another tenant's batch."""
    _, b = two_tenants
    as_tenant(conn, None)
    api = SqlApi(conn)
    for call in (
        lambda: api.batch_status(b["tenant"], b["running"]),
        lambda: api.cancel_batch(b["tenant"], b["running"]),
    ):
        with pytest.raises(psycopg.Error) as exc:
            call()
        assert exc.value.sqlstate in ("BC002", "42501"), str(exc.value)
    conn.execute("reset role")
    assert SqlApi(conn).batch_status(b["tenant"], b["running"])["status"] == "running"


WORKER_CALLS = [
    ("claim_entries", "select * from batchctl.claim_entries('w', 10, 60)"),
    ("sweep", "select batchctl.sweep()"),
    ("mark_dispatched", "select batchctl.mark_dispatched(gen_random_uuid(), 'room', null)"),
    ("mark_dispatch_failed", "select batchctl.mark_dispatch_failed(gen_random_uuid(), 'x', true)"),
    ("report_call_status", "select batchctl.report_call_status(gen_random_uuid(), 'ended', '{}')"),
    ("claim_report", "select * from batchctl.claim_report('w')"),
    ("report_sent", "select batchctl.report_sent(gen_random_uuid())"),
    ("report_failed", "select batchctl.report_failed(gen_random_uuid(), 'x')"),
    ("create_tenant", "select batchctl.create_tenant('evil', 3, 'UTC')"),
    ("fail_batch", "select batchctl.fail_batch(gen_random_uuid(), gen_random_uuid(), 'x')"),
]


@pytest.mark.parametrize(("name", "statement"), WORKER_CALLS, ids=[c[0] for c in WORKER_CALLS])
def test_tenant_role_cannot_execute_worker_functions(
    conn: psycopg.Connection[Any],
    two_tenants: tuple[dict[str, Any], dict[str, Any]],
    name: str,
    statement: str,
) -> None:
    """The tenant role gets insufficient_privilege (42501) for every worker/admin function."""
    a, _ = two_tenants
    as_tenant(conn, a["tenant"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    conn.execute("reset role")
    # Nothing happened: the live call is still live, no tenant was created.
    assert _val(conn.execute("select count(*) from batchctl.tenants").fetchone()) == 2
    assert (
        _val(
            conn.execute(
                "select count(*) from batchctl.call_logs"
                " where status in ('in_queue', 'ringing', 'ongoing')"
            ).fetchone()
        )
        == 2
    )


@pytest.mark.parametrize("table", TABLES)
def test_tenant_role_cannot_write_tables_directly(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]], table: str
) -> None:
    """UPDATE, DELETE and INSERT on any table are refused to the tenant role, even own rows."""
    a, _ = two_tenants
    as_tenant(conn, a["tenant"])
    col = "id" if table == "tenants" else "tenant_id"
    ident = sql.Identifier(table)
    statements = [
        sql.SQL("update batchctl.{} set {} = {} where {} = %s").format(
            ident, sql.Identifier(col), sql.Identifier(col), sql.Identifier(col)
        ),
        sql.SQL("delete from batchctl.{} where {} = %s").format(ident, sql.Identifier(col)),
    ]
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement, (a["tenant"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("insert into batchctl.{} default values").format(ident))


def test_tenant_role_cannot_bypass_via_entry_update(
    conn: psycopg.Connection[Any], two_tenants: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """Marking one's own entry completed by hand is refused; the counters stay right."""
    a, _ = two_tenants
    as_tenant(conn, a["tenant"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "update batchctl.batch_entries set status = 'completed' where id = %s", (a["entry"],)
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "update batchctl.batches set completed_count = 99 where id = %s", (a["running"],)
        )
    assert SqlApi(conn).batch_status(a["tenant"], a["running"])["completed"] == 0

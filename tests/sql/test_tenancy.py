"""Tenancy (SPEC §8, docs/security.md), tried as an attacker would: a login bound to its tenant
sees and changes only that tenant whatever it sets; a tenant login bound to nothing can do
nothing; only a batchctl_gateway member chooses its tenant, per transaction; the tenant role
reaches no worker function and no table directly; the voice agent's role reports calls only.

Most tests switch the (superuser) test connection to a login role with SET ROLE, which is what
batchctl reads as the session's role; one connects as the login itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from invariants import assert_invariants
from sqlapi import NEW_ENTRIES, SqlApi, phones
from tenancy import RELATIONS, TABLES, Tenant, populate_tenant, tenant_ids_in
from tenant_logins import act_as, login_role


def _val(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


@pytest.fixture
def two_tenants(conn: psycopg.Connection[Any]) -> Iterator[tuple[Tenant, Tenant]]:
    api = SqlApi(conn)
    a = populate_tenant(api, "tenant-a", 0)
    b = populate_tenant(api, "tenant-b", 100)
    yield a, b
    conn.execute("reset role")
    assert_invariants(conn)


def set_tenant_setting(conn: psycopg.Connection[Any], tenant: UUID | str | None) -> None:
    if tenant is None:
        conn.execute("reset batchctl.tenant_id")
    else:
        conn.execute(sql.SQL("set batchctl.tenant_id = {}").format(sql.Literal(str(tenant))))


def tenant_calls(api: SqlApi, tenant: Tenant, other: Tenant) -> dict[str, Callable[[], Any]]:
    """Every tenant function, called on ``other``'s objects (with ``tenant``'s own id where
    the object alone says whose it is, and with ``other``'s id), keyed by its signature."""
    t, o = tenant["tenant"], other["tenant"]
    one = phones(1, 500)
    return {
        "batchctl.create_batch(uuid,jsonb,jsonb,uuid)": lambda: api.create_batch(o, one),
        "batchctl.create_batch_from_rows(uuid,batchctl.new_entry[],jsonb,uuid)": (
            lambda: api.create_batch_from_rows(o, one)
        ),
        "batchctl.add_entries(uuid,uuid,batchctl.new_entry[])": lambda: api.add_entries(
            t, other["running"], one
        ),
        "batchctl.start_batch(uuid,uuid)": lambda: api.start_batch(o, other["running"]),
        "batchctl.pause_batch(uuid,uuid)": lambda: api.pause_batch(t, other["running"]),
        "batchctl.resume_batch(uuid,uuid)": lambda: api.resume_batch(o, other["running"]),
        "batchctl.cancel_batch(uuid,uuid,text)": lambda: api.cancel_batch(t, other["running"]),
        "batchctl.cancel_entry(uuid,uuid)": lambda: api.cancel_entry(o, other["entry"]),
        "batchctl.batch_status(uuid,uuid)": lambda: api.batch_status(o, other["running"]),
        "batchctl.add_dnc(uuid,text)": lambda: api.add_dnc(o, "+14155550999"),
        "batchctl.report_summary(uuid)": lambda: api.conn.execute(
            "select * from batchctl.report_summary(%s)", (other["done"],)
        ),
        "batchctl.record_intake_refusals(uuid,uuid,jsonb)": lambda: api.record_intake_refusals(
            t, other["running"], [{"line": 2, "to_phone": "12", "problem": "not a number"}]
        ),
        "batchctl.set_policy(uuid,jsonb)": lambda: api.set_policy(o, {"require_consent": True}),
        "batchctl.get_policy(uuid)": lambda: api.get_policy(o),
        "batchctl.explain_entry(uuid,uuid)": lambda: api.explain_entry(t, other["entry"]),
        "batchctl.create_trunk(uuid,text,text,numeric,integer)": (
            lambda: api.create_trunk(o, "stolen", "ST_x", 1)
        ),
        "batchctl.update_trunk(uuid,uuid,jsonb)": lambda: api.update_trunk(
            t, other["trunk"], {"name": "stolen"}
        ),
        "batchctl.trunk_status(uuid,uuid)": lambda: api.trunk_status(o, other["trunk"]),
        "batchctl.add_caller_ids(uuid,uuid,text[],integer)": lambda: api.add_caller_ids(
            t, other["trunk"], ["+13055550999"]
        ),
        "batchctl.remove_caller_ids(uuid,uuid,text[])": lambda: api.remove_caller_ids(
            o, other["trunk"], ["+13055550100"]
        ),
        "batchctl.add_webhook(uuid,text,text[],text)": lambda: api.add_webhook(
            o, "https://stolen.example.com/"
        ),
        "batchctl.remove_webhook(uuid,uuid)": lambda: api.remove_webhook(t, other["endpoint"]),
        "batchctl.list_webhooks(uuid)": lambda: api.list_webhooks(o),
        "batchctl.webhook_deliveries(uuid,uuid,integer)": lambda: api.webhook_deliveries(
            t, other["endpoint"]
        ),
        "batchctl.replay_webhooks(uuid,uuid,timestamptz)": lambda: api.replay_webhooks(
            t, other["endpoint"], datetime(2000, 1, 1, tzinfo=UTC)
        ),
        # Tells a session its own tenant only: nothing of another's to refuse.
        "batchctl.session_tenant()": lambda: None,
    }


def granted_to_tenants(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        """select p.oid::regprocedure::text as f from pg_proc p
            where p.pronamespace = 'batchctl'::regnamespace
              and has_function_privilege('batchctl_tenant', p.oid, 'EXECUTE')"""
    ).fetchall()
    return {r["f"].replace(" ", "").replace("timestampwithtimezone", "timestamptz") for r in rows}


def still_untouched(conn: psycopg.Connection[Any], b: Tenant) -> None:
    conn.execute("reset role")
    status = SqlApi(conn).batch_status(b["tenant"], b["running"])
    assert (status["status"], status["dispatched"], status["queued"]) == ("running", 2, 1)
    for table, rows in (
        ("batches", 2), ("dnc_numbers", 1), ("trunks", 1), ("caller_ids", 1),
        ("webhook_endpoints", 1),
    ):  # fmt: skip
        count = sql.SQL("select count(*) from batchctl.{} where tenant_id = %s")
        found = conn.execute(count.format(sql.Identifier(table)), (b["tenant"],)).fetchone()
        assert _val(found) == rows, table
    policy = conn.execute("select policy from batchctl.tenants where id = %s", (b["tenant"],))
    assert _val(policy.fetchone()) == {}  # set_policy changed nothing
    trunk = conn.execute("select name from batchctl.trunks where id = %s", (b["trunk"],))
    assert _val(trunk.fetchone()) == "main"  # update_trunk changed nothing


@pytest.mark.parametrize("relation", RELATIONS)
def test_a_bound_login_sees_only_its_tenant_whatever_it_sets(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant], relation: str
) -> None:
    a, b = two_tenants
    assert tenant_ids_in(conn, relation) == {a["tenant"], b["tenant"]}  # superuser: both
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        for setting in (b["tenant"], None, "", a["tenant"]):
            set_tenant_setting(conn, setting)
            assert tenant_ids_in(conn, relation) == {a["tenant"]}, setting


def test_a_bound_login_sees_all_of_its_own_rows_and_none_of_anothers_by_id(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = two_tenants
    count = sql.SQL("select count(*) from batchctl.{} where {} = %s")
    expected = {
        t: _val(
            conn.execute(
                count.format(
                    sql.Identifier(t), sql.Identifier("id" if t == "tenants" else "tenant_id")
                ),
                (a["tenant"],),
            ).fetchone()
        )
        for t in TABLES
    }
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        set_tenant_setting(conn, b["tenant"])
        for t in TABLES:
            total = conn.execute(
                sql.SQL("select count(*) from batchctl.{}").format(sql.Identifier(t))
            ).fetchone()
            assert _val(total) == expected[t] > 0, t
        for relation, key in (("batches", b["running"]), ("call_logs", b["call"])):
            query = sql.SQL("select * from batchctl.{} where id = %s").format(
                sql.Identifier(relation)
            )
            assert conn.execute(query, (key,)).fetchone() is None
        overview = conn.execute("select batch_id from batchctl.batch_overview").fetchall()
        assert {r["batch_id"] for r in overview} == {a["done"], a["running"]}


def test_every_tenant_function_answers_not_found_for_another_tenant(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    """A login bound to A, with the setting pointing at B: every function granted to the tenant
    role, called on B, is BC002 and changes nothing; A's own calls work."""
    a, b = two_tenants
    api = SqlApi(conn)
    calls = tenant_calls(api, a, b)
    assert set(calls) == granted_to_tenants(conn), "a tenant function this test does not try"
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        set_tenant_setting(conn, b["tenant"])
        for name, call in calls.items():
            if name == "batchctl.session_tenant()":
                assert (
                    _val(conn.execute("select batchctl.session_tenant()").fetchone())
                    == (a["tenant"])
                )
                continue
            with pytest.raises(psycopg.Error) as exc:
                call()
            assert exc.value.sqlstate == "BC002", (name, exc.value.sqlstate, str(exc.value))
            assert "not found" in str(exc.value), name
        assert api.batch_status(a["tenant"], a["running"])["status"] == "running"
        assert api.set_policy(a["tenant"], {"holidays": ["2026-12-25"]})["holidays"] == [
            "2026-12-25"
        ]
        assert api.explain_entry(a["tenant"], a["entry"])["reasons"] != []  # on a live call
        assert api.trunk_status(a["tenant"], a["trunk"])["default"] is True
        assert api.add_caller_ids(a["tenant"], a["trunk"], ["+13055550700"]) == 1
        new = api.create_batch(a["tenant"], phones(1, 700), {"autostart": False})
        assert api.cancel_batch(a["tenant"], new) == 1
        still_untouched(conn, b)


def test_a_tenant_login_bound_to_nothing_can_do_nothing(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    """A batchctl_tenant member with no binding sees no row, whatever it sets, and every
    tenant function refuses it (42501, naming the fix)."""
    a, b = two_tenants
    api = SqlApi(conn)
    calls = tenant_calls(api, b, a)  # with its "own" id being A's: nothing to own
    with login_role(conn) as nobody:
        act_as(conn, nobody)
        for setting in (a["tenant"], None):
            set_tenant_setting(conn, setting)
            for relation in RELATIONS:
                assert tenant_ids_in(conn, relation) == set(), relation
        set_tenant_setting(conn, a["tenant"])
        assert _val(conn.execute("select batchctl.session_tenant()").fetchone()) is None
        for name, call in calls.items():
            if name in ("batchctl.session_tenant()", "batchctl.report_summary(uuid)"):
                continue  # (report_summary reads through row-level security: BC002)
            with pytest.raises(psycopg.Error) as exc:
                call()
            assert exc.value.sqlstate == "42501", (name, str(exc.value))
            assert "acts for no tenant" in str(exc.value), name
        with pytest.raises(psycopg.Error) as exc:
            api.conn.execute("select * from batchctl.report_summary(%s)", (a["done"],))
        assert exc.value.sqlstate == "BC002"
        still_untouched(conn, b)


def test_a_gateway_chooses_the_tenant_per_transaction(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    """A batchctl_gateway member acts for the tenant its transaction names (SET LOCAL or
    set_config(..., true)); outside one it acts for none."""
    a, b = two_tenants
    api = SqlApi(conn)
    with login_role(conn, member_of=("batchctl_gateway",)) as gateway:
        act_as(conn, gateway)
        with conn.transaction():
            conn.execute(
                sql.SQL("set local batchctl.tenant_id = {}").format(sql.Literal(str(a["tenant"])))
            )
            assert tenant_ids_in(conn, "batches") == {a["tenant"]}
            assert api.batch_status(a["tenant"], a["running"])["status"] == "running"
            with pytest.raises(psycopg.Error) as exc, conn.transaction():
                api.batch_status(b["tenant"], b["running"])
            assert exc.value.sqlstate == "BC002"
        with conn.transaction():
            conn.execute("select set_config('batchctl.tenant_id', %s, true)", (str(b["tenant"]),))
            assert tenant_ids_in(conn, "batches") == {b["tenant"]}
        assert tenant_ids_in(conn, "batches") == set()  # the transaction's setting is gone
        with pytest.raises(psycopg.Error) as exc:
            api.batch_status(a["tenant"], a["running"])
        assert exc.value.sqlstate == "42501"


def test_a_bound_login_that_is_also_a_gateway_keeps_to_its_binding(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = two_tenants
    with login_role(conn, a["tenant"], member_of=("batchctl_gateway",)) as role:
        act_as(conn, role)
        set_tenant_setting(conn, b["tenant"])
        assert tenant_ids_in(conn, "batch_entries") == {a["tenant"]}
        with pytest.raises(psycopg.Error) as exc:
            SqlApi(conn).cancel_batch(b["tenant"], b["running"])
        assert exc.value.sqlstate == "BC002"
        still_untouched(conn, b)


def test_a_login_connection_is_bound_as_it_logs_in(
    conn: psycopg.Connection[Any], db_url: str, two_tenants: tuple[Tenant, Tenant]
) -> None:
    """The same through a connection of the login itself (no SET ROLE involved)."""
    a, b = two_tenants
    with login_role(conn, a["tenant"]) as alice:
        url = make_conninfo(db_url, user=alice)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as own:
            set_tenant_setting(own, b["tenant"])
            assert tenant_ids_in(own, "batches") == {a["tenant"]}
            with pytest.raises(psycopg.Error) as exc:
                SqlApi(own).pause_batch(b["tenant"], b["running"])
            assert exc.value.sqlstate == "BC002"
            # SET ROLE to a role it is not a member of is refused by PostgreSQL itself.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                own.execute("set role batchctl_worker")
    still_untouched(conn, b)


def test_granting_and_revoking_a_login(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = two_tenants

    def grant(role: str, tenant: UUID | None) -> None:
        conn.execute("select batchctl.grant_tenant_login(%s, %s)", (role, tenant))

    def refused(sqlstate: str, text: str, call: Callable[[], Any]) -> None:
        with pytest.raises(psycopg.Error) as exc:
            call()
        assert exc.value.sqlstate == sqlstate and text in str(exc.value), str(exc.value)

    refused("BC002", "role 'no_such_role' not found", lambda: grant("no_such_role", a["tenant"]))
    refused("BC001", "sees every tenant", lambda: grant("postgres", a["tenant"]))
    refused("BC001", "sees every tenant", lambda: grant("batchctl_tenant", a["tenant"]))
    with login_role(conn, member_of=("batchctl_worker",)) as worker:
        refused("BC001", "sees every tenant", lambda: grant(worker, a["tenant"]))
    with login_role(conn, member_of=("batchctl_agent",)) as newcomer:
        refused("BC002", "not found", lambda: grant(newcomer, UUID(int=1)))
        grant(newcomer, a["tenant"])
        grant(newcomer, a["tenant"])  # the same again: nothing changes
        refused("BC003", "is bound to tenant", lambda: grant(newcomer, b["tenant"]))
        member = conn.execute(
            "select pg_has_role(%s, 'batchctl_tenant', 'MEMBER') as m", (newcomer,)
        ).fetchone()
        assert member == {"m": True}
        act_as(conn, newcomer)
        assert tenant_ids_in(conn, "batches") == {a["tenant"]}
        conn.execute("reset role")
        revoke = "select batchctl.revoke_tenant_login(%s) as r"
        assert conn.execute(revoke, (newcomer,)).fetchone() == {"r": True}
        assert conn.execute(revoke, (newcomer,)).fetchone() == {"r": False}
        act_as(conn, newcomer)
        assert tenant_ids_in(conn, "batches") == set()
        conn.execute("reset role")
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select batchctl.grant_tenant_login(%s, %s)", (alice, b["tenant"]))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from batchctl.tenant_logins")


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
    ("prune", "select batchctl.prune('1 day')"),
]


@pytest.mark.parametrize(("name", "statement"), WORKER_CALLS, ids=[c[0] for c in WORKER_CALLS])
def test_a_tenant_login_cannot_execute_worker_functions(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant], name: str, statement: str
) -> None:
    """insufficient_privilege (42501) for every worker/admin function; nothing happens."""
    a, _ = two_tenants
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    live = (
        "select count(*) from batchctl.call_logs where status in ('in_queue', 'ringing', 'ongoing')"
    )
    assert _val(conn.execute("select count(*) from batchctl.tenants").fetchone()) == 2
    assert _val(conn.execute(live).fetchone()) == 4


@pytest.mark.parametrize("table", TABLES)
def test_a_tenant_login_cannot_write_tables_directly(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant], table: str
) -> None:
    """UPDATE, DELETE and INSERT on any table are refused to a tenant login, even own rows."""
    a, _ = two_tenants
    col = sql.Identifier("id" if table == "tenants" else "tenant_id")
    ident = sql.Identifier(table)
    statements = [
        sql.SQL("update batchctl.{} set {} = {} where {} = %s").format(ident, col, col, col),
        sql.SQL("delete from batchctl.{} where {} = %s").format(ident, col),
    ]
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, (a["tenant"],))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("insert into batchctl.{} default values").format(ident))


def test_a_tenant_login_cannot_bypass_via_entry_update(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    """Marking one's own entry completed by hand is refused; the counters stay right."""
    a, _ = two_tenants
    with login_role(conn, a["tenant"]) as alice:
        act_as(conn, alice)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "update batchctl.batch_entries set status = 'completed' where id = %s",
                (a["entry"],),
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "update batchctl.batches set completed_count = 99 where id = %s", (a["running"],)
            )
        assert SqlApi(conn).batch_status(a["tenant"], a["running"])["completed"] == 0


def test_the_agent_role_reports_calls_and_does_nothing_else(
    conn: psycopg.Connection[Any], two_tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = two_tenants
    api = SqlApi(conn)
    with login_role(conn, member_of=("batchctl_agent",)) as agent:
        act_as(conn, agent)
        assert api.report(a["call"], "ringing") == "dispatched"
        assert api.report_many([(a["call"], "ongoing")]) == ["dispatched"]
        for statement in (
            "select * from batchctl.claim_entries('w', 10, 60)",
            "select count(*) from batchctl.batches",
            "select count(*) from batchctl.batch_overview",
            "select batchctl.sweep()",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                f"select batchctl.create_batch_from_rows(%s, {NEW_ENTRIES})", (a["tenant"], "[]")
            )


def test_every_relation_a_tenant_may_read_is_covered(conn: psycopg.Connection[Any]) -> None:
    """Each table the tenant role may SELECT has row-level security and a tenant policy; each
    view it may read runs with the caller's rights, and this test's RELATIONS names them all."""
    readable = conn.execute(
        """select c.relname, c.relkind, c.relrowsecurity,
                  exists (select 1 from pg_policy p where p.polrelid = c.oid
                             and 'batchctl_tenant'::regrole = any (p.polroles)) as policy,
                  coalesce('security_invoker=true' = any (c.reloptions), false) as invoker
             from pg_class c
            where c.relnamespace = 'batchctl'::regnamespace and c.relkind in ('r', 'v')
              and has_table_privilege('batchctl_tenant', c.oid, 'SELECT')"""
    ).fetchall()
    assert {r["relname"] for r in readable} == set(RELATIONS)
    for r in readable:
        if r["relkind"] == "r":
            assert r["relrowsecurity"] and r["policy"], r
        else:
            assert r["invoker"], r

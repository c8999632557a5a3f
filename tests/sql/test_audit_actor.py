"""events.actor: every audited change names the database role that made it (the login, or the
role it SET ROLE to) and, after "via", what the application said for it in batchctl.actor (the
dashboard: its signed-in token's name). The role part cannot be claimed by the caller."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from sqlapi import SqlApi, phones
from tenant_logins import act_as, login_role

Conn = psycopg.Connection[dict[str, Any]]


def actors(conn: Conn, batch: UUID, to_status: str) -> list[str | None]:
    rows = conn.execute(
        """select actor from batchctl.events
            where object = 'batch' and object_id = %s and to_status = %s order by id""",
        (batch, to_status),
    ).fetchall()
    return [r["actor"] for r in rows]


def test_an_event_names_the_role_that_made_the_change(api: SqlApi, conn: Conn) -> None:
    owner = conn.execute("select current_user as u").fetchone()["u"]  # type: ignore[index]
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2))
    assert actors(conn, batch, "running") == [owner]
    with login_role(conn, tenant) as role:
        act_as(conn, role)
        conn.execute("select batchctl.pause_batch(%s, %s)", (tenant, batch))
        conn.execute("reset role")
    assert actors(conn, batch, "paused") == [role]


def test_the_application_adds_who_it_acted_for(api: SqlApi, conn: Conn) -> None:
    owner = conn.execute("select current_user as u").fetchone()["u"]  # type: ignore[index]
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2))
    with conn.transaction():
        conn.execute("select set_config('batchctl.actor', 'dashboard: night shift', true)")
        conn.execute("select batchctl.pause_batch(%s, %s)", (tenant, batch))
    # Per transaction: the next change is the role's alone again.
    conn.execute("select batchctl.resume_batch(%s, %s)", (tenant, batch))
    assert actors(conn, batch, "paused") == [f"{owner} via dashboard: night shift"]
    assert actors(conn, batch, "running") == [owner, owner]


def test_a_caller_cannot_claim_another_role(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2))
    with login_role(conn, tenant) as role:
        act_as(conn, role)
        # The setting is only a claim: the role comes first, from the session.
        with conn.transaction():
            conn.execute("select set_config('batchctl.actor', 'postgres', true)")
            conn.execute("select batchctl.pause_batch(%s, %s)", (tenant, batch))
        conn.execute("reset role")
    assert actors(conn, batch, "paused") == [f"{role} via postgres"]

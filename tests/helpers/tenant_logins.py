"""Login roles for tenancy tests. Roles are cluster-wide and the test server may be shared, so
each one gets a random name and is dropped when its test is done."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql


@contextmanager
def login_role(
    conn: psycopg.Connection[Any],
    tenant: UUID | None = None,
    *,
    member_of: tuple[str, ...] = ("batchctl_tenant",),
) -> Iterator[str]:
    """A LOGIN role, a member of ``member_of``, bound to ``tenant`` when one is given (through
    batchctl.grant_tenant_login, as `batchctl tenant grant-login` does)."""
    name = f"batchctl_test_{secrets.token_hex(5)}"
    conn.execute(
        sql.SQL("create role {} login in role {}").format(
            sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, member_of))
        )
    )
    try:
        if tenant is not None:
            conn.execute("select batchctl.grant_tenant_login(%s, %s)", (name, tenant))
        yield name
    finally:
        conn.execute("reset role")
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def act_as(conn: psycopg.Connection[Any], role: str) -> None:
    """The session acts as ``role`` from now on, as a connection logged in as it would."""
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))

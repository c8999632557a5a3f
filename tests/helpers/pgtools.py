"""Helpers for tests that manage databases themselves (conftest's fixtures use them too)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.rows import Row

from batchctl.conninfo import with_dbname


def one_row(
    conn: psycopg.Connection[Row], query: QueryNoTemplate, params: Params | None = None
) -> Row:
    """The row of a query that returns one (its first, if it returns more); fails the test if it
    returns none. Typed as the connection's rows: a dict_row connection gives a dict."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, f"no row from {query!r}"
    return row


def one_value(
    conn: psycopg.Connection[Any], query: QueryNoTemplate, params: Params | None = None
) -> Any:
    """The value of the one column of the row of a query that returns one, whatever the
    connection's row factory (dict or tuple rows)."""
    row = one_row(conn, query, params)
    values = list(row.values()) if isinstance(row, dict) else list(row)
    assert len(values) == 1, f"{len(values)} columns from {query!r}"
    return values[0]


def url_for(server_url: str, dbname: str) -> str:
    """``server_url`` pointed at another database (keeps user, host or ``?host=`` socket dir)."""
    return with_dbname(server_url, dbname)


def create_database(admin: psycopg.Connection[Any], name: str, template: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    admin.execute(query)


def drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    # FORCE ends sessions a test left open (threads, a failed assertion before a close).
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_until_unused(admin: psycopg.Connection[Any], name: str, timeout: float = 10.0) -> None:
    """Wait for every session on ``name`` to end (a closed connection's backend exits a moment
    after the client is gone); fail naming the ones that stay."""
    deadline = time.monotonic() + timeout
    while True:
        rows = admin.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
        if not rows:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"sessions still open on database {name}: {rows}")
        time.sleep(0.02)


def set_calling_hours_aside(url: str) -> None:
    """Takes the shipped calling-hours rules (docs/compliance.md) of a freshly upgraded
    database out of force (what an owner may do: the rules are data).

    They allow US numbers from 08:00 to 21:00 in the lead's zone, which in most tests is their
    tenant's UTC: a test written before them that dials such numbers would pass or fail by the
    hour it runs at. The tests of the rules put them back (tests/sql/test_jurisdictions.py)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM batchctl.jurisdiction_rules")

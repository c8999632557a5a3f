"""Helpers for tests that manage databases themselves (conftest's fixtures use them too)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from batchctl.conninfo import with_dbname


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

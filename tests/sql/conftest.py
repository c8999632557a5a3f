"""The shipped calling-hours rules, for the tests that put them back in force (the template
database has them set aside: tests/helpers/pgtools.py)."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

from batchctl.migrate import upgrade
from checks import Conn
from pgtools import create_database, drop_database, url_for


@pytest.fixture(scope="session")
def shipped(pg_server_url: str, admin_conn: psycopg.Connection[Any]) -> str:
    """The rules a fresh `batchctl db upgrade` ships, as a JSON array of rows."""
    name = f"test_shipped_{secrets.token_hex(4)}"
    create_database(admin_conn, name, template="template0")
    try:
        url = url_for(pg_server_url, name)
        upgrade(url)
        with psycopg.connect(url) as c:
            row = c.execute(
                "select jsonb_agg(to_jsonb(r) order by r.jurisdiction)::text"
                " from batchctl.jurisdiction_rules r"
            ).fetchone()
        assert row is not None
        return str(row[0])
    finally:
        drop_database(admin_conn, name)


@pytest.fixture
def rules(conn: Conn, shipped: str) -> Conn:
    """The database with the rules batchctl ships in force."""
    conn.execute(
        """insert into batchctl.jurisdiction_rules
           select * from jsonb_populate_recordset(null::batchctl.jurisdiction_rules, %s::jsonb)""",
        (shipped,),
    )
    return conn

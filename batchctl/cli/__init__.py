"""The ``batchctl`` command line.

Each command group lives in its own module of this package and is registered below. Errors a
person can act on (cannot connect, a SQL function refused, an upgrade failed) end the command
with one ``error: ...`` line and exit status 1; usage errors keep click's exit status 2.
"""

from __future__ import annotations

from typing import IO, Any

import click
import psycopg

from batchctl.cli.context import AppContext
from batchctl.cli.db import db
from batchctl.database import ENV_VAR, error_message
from batchctl.migrate import UpgradeError

USER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, UpgradeError)


class UserError(click.ClickException):
    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class BatchctlGroup(click.Group):
    """Turns user errors raised anywhere below into UserError. Done in the group, not in
    main(), so click's test runner sees exactly what a person at the terminal sees."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise UserError(error_message(exc)) from exc


@click.group(cls=BatchctlGroup)
@click.option(
    "--database-url",
    envvar=ENV_VAR,
    metavar="URL",
    help=f"libpq URL of the database [env {ENV_VAR}; default: an embedded PostgreSQL]",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Run outbound AI voice-call batches from PostgreSQL."""
    ctx.obj = AppContext(database_url)


cli.add_command(db)


def main() -> None:
    cli.main(prog_name="batchctl")

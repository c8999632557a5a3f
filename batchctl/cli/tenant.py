"""``batchctl tenant``: the organisations batches run for."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click
import psycopg
from psycopg.rows import dict_row

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.cli.output import json_option, print_json, print_table
from batchctl.client.sync import Client
from batchctl.database import connect


def resolve_tenant(conn: psycopg.Connection[Any], ref: str) -> UUID:
    """The id of the tenant ``ref`` names, by id or by exact name."""
    try:
        candidate: UUID | None = UUID(ref)
    except ValueError:
        candidate = None
    rows = conn.execute(
        "SELECT id FROM batchctl.tenants WHERE id = %s OR name = %s ORDER BY created_at",
        (candidate, ref),
    ).fetchall()
    if not rows:
        raise UserError(f'tenant "{ref}" not found (batchctl tenant list shows them)')
    if len(rows) > 1:
        ids = ", ".join(str(row[0]) for row in rows)
        raise UserError(f'{len(rows)} tenants are named "{ref}"; use an id: {ids}')
    return rows[0][0]


@click.group()
def tenant() -> None:
    """Tenants: the organisations batches run for."""


@tenant.command()
@click.argument("name")
@click.option(
    "--max-concurrent",
    type=int,
    default=3,
    show_default=True,
    help="Calls in flight at once for this tenant, over all its batches.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="IANA zone for call windows of leads without one of their own.",
)
@json_option
@click.pass_obj
def create(app: AppContext, name: str, max_concurrent: int, timezone: str, as_json: bool) -> None:
    """Create a tenant and print its id."""
    with connect(app.database_url()) as conn:
        tenant_id = Client(conn).create_tenant(name, max_concurrent, timezone)
    if as_json:
        print_json({"tenant_id": tenant_id})
    else:
        click.echo(tenant_id)


@tenant.command("list")
@json_option
@click.pass_obj
def list_tenants(app: AppContext, as_json: bool) -> None:
    """List the tenants, with their limits and unfinished batches."""
    with connect(app.read_url()) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT t.id AS tenant_id, t.name, t.max_concurrent_calls, t.timezone,
                      (SELECT count(*) FROM batchctl.batches b
                        WHERE b.tenant_id = t.id AND b.finished_at IS NULL) AS unfinished_batches,
                      t.created_at
                 FROM batchctl.tenants t ORDER BY t.created_at, t.id"""
        ).fetchall()
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            ("tenant_id", "TENANT"),
            ("name", "NAME"),
            ("max_concurrent_calls", "MAX CONCURRENT"),
            ("timezone", "TIMEZONE"),
            ("unfinished_batches", "UNFINISHED BATCHES"),
            ("created_at", "CREATED (UTC)"),
        ],
        empty="no tenants yet (batchctl tenant create NAME)",
    )


@tenant.command("grant-login")
@click.argument("role")
@click.argument("tenant_ref", metavar="TENANT")
@click.pass_obj
def grant_login(app: AppContext, role: str, tenant_ref: str) -> None:
    """Bind the database login ROLE to TENANT: it then acts for that tenant only, whatever it
    sets (and becomes a member of batchctl_tenant). Run it as the database owner."""
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant_ref)
        Client(conn).grant_tenant_login(role, tenant_id)
    click.echo(f"{role} acts for tenant {tenant_id}")


@tenant.command("revoke-login")
@click.argument("role")
@click.pass_obj
def revoke_login(app: AppContext, role: str) -> None:
    """Remove ROLE's binding: it acts for no tenant any more (and so may do nothing)."""
    with connect(app.database_url()) as conn:
        revoked = Client(conn).revoke_tenant_login(role)
    if not revoked:
        raise UserError(f"{role} is bound to no tenant (batchctl tenant logins shows them)")
    click.echo(f"{role} acts for no tenant")


@tenant.command("logins")
@click.argument("tenant_ref", metavar="[TENANT]", required=False)
@json_option
@click.pass_obj
def list_logins(app: AppContext, tenant_ref: str | None, as_json: bool) -> None:
    """List the logins bound to tenants (to TENANT only, when given)."""
    with connect(app.read_url()) as conn, conn.cursor(row_factory=dict_row) as cur:
        tenant_id = resolve_tenant(conn, tenant_ref) if tenant_ref else None
        rows = cur.execute(
            """SELECT l.role_name AS role, l.tenant_id, t.name AS tenant, l.created_at
                 FROM batchctl.tenant_logins l JOIN batchctl.tenants t ON t.id = l.tenant_id
                WHERE %(t)s::uuid IS NULL OR l.tenant_id = %(t)s::uuid
                ORDER BY t.name, l.role_name""",
            {"t": tenant_id},
        ).fetchall()
    if as_json:
        print_json(rows)
        return
    print_table(
        rows,
        [
            ("role", "ROLE"),
            ("tenant_id", "TENANT"),
            ("tenant", "NAME"),
            ("created_at", "BOUND (UTC)"),
        ],
        empty="no logins are bound (batchctl tenant grant-login ROLE TENANT)",
    )

"""``batchctl batch``: create, inspect and steer batches (campaigns)."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import click
from psycopg.rows import dict_row

from batchctl.cli.batch_common import batch_id_argument, batch_tenant, print_counts
from batchctl.cli.batch_create import create
from batchctl.cli.batch_show import show
from batchctl.cli.batch_watch import watch
from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.cli.output import json_option, print_json, print_table
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect

LIST_COLUMNS = [
    ("batch_id", "BATCH"),
    ("tenant_name", "TENANT"),
    ("status", "STATUS"),
    ("total", "TOTAL"),
    ("pending", "PENDING"),
    ("completed", "COMPLETED"),
    ("failed", "FAILED"),
    ("declined", "DECLINED"),
    ("cancelled", "CANCELLED"),
    ("report_status", "REPORT"),
    ("created_at", "CREATED (UTC)"),
]


@click.group()
def batch() -> None:
    """Batches: create one from a CSV file, list, show, watch, pause, resume, cancel."""


batch.add_command(create)
batch.add_command(show)
batch.add_command(watch)


@batch.command("list")
@click.option("--tenant", help="Only this tenant's (id or exact name).")
@click.option("--status", help="Only batches in this status (e.g. running).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@click.pass_obj
def list_batches(
    app: AppContext, tenant: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List batches, newest first."""
    with connect(app.read_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant) if tenant else None
        if status is not None:
            row = conn.execute("SELECT enum_range(NULL::batchctl.batch_status)::text[]").fetchone()
            assert row is not None
            if status not in row[0]:
                allowed = ", ".join(row[0])
                raise UserError(f'--status: unknown status "{status}" (allowed: {allowed})')
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                """SELECT * FROM batchctl.batch_overview
                    WHERE (%(tenant)s::uuid IS NULL OR tenant_id = %(tenant)s)
                      AND (%(status)s::text IS NULL OR status::text = %(status)s)
                    ORDER BY created_at DESC, batch_id LIMIT %(limit)s""",
                {"tenant": tenant_id, "status": status, "limit": limit},
            ).fetchall()
    if as_json:
        print_json(rows)
    else:
        print_table(rows, LIST_COLUMNS, empty="no batches")


def _state_command(name: str, function: Callable[[Client, UUID, UUID], None], summary: str) -> None:
    """``batch NAME BATCH``: calls the tenant function for the batch's tenant."""

    @batch.command(name, help=summary)
    @batch_id_argument
    @json_option
    @click.pass_obj
    def command(app: AppContext, batch_id: UUID, as_json: bool) -> None:
        with connect(app.database_url()) as conn:
            tenant_id, client = batch_tenant(conn, batch_id), Client(conn)
            function(client, tenant_id, batch_id)
            status = client.batch_status(tenant_id, batch_id)
        if as_json:
            print_json(status)
        else:
            click.echo(f"batch {batch_id} {status['status']}")


_state_command("start", Client.start_batch, "Start a batch created with --no-autostart.")
_state_command(
    "pause", Client.pause_batch, "Pause a running batch: no new calls; live calls go on."
)
_state_command("resume", Client.resume_batch, "Resume a paused batch.")


@batch.command()
@batch_id_argument
@click.option("--reason", help="Kept on the batch and in its events.")
@json_option
@click.pass_obj
def cancel(app: AppContext, batch_id: UUID, reason: str | None, as_json: bool) -> None:
    """Cancel a batch: queued leads are cancelled now, live calls are hung up, and the batch
    finishes (and is reported) when they have ended."""
    with connect(app.database_url()) as conn:
        tenant_id, client = batch_tenant(conn, batch_id), Client(conn)
        cancelled_now = client.cancel_batch(tenant_id, batch_id, reason)
        status = client.batch_status(tenant_id, batch_id)
    if as_json:
        print_json({"cancelled_now": cancelled_now, "batch_status": status})
        return
    click.echo(
        f"batch {batch_id} {status['status']}: {cancelled_now} leads cancelled now, "
        f"{status['dispatched']} live calls being hung up"
    )
    print_counts(status)

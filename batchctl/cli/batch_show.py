"""``batchctl batch show``: one batch's counts, timings, report, latest errors and webhook
deliveries."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click
import psycopg
from psycopg.rows import dict_row

from batchctl.cli.batch_common import batch_id_argument, batch_not_found, print_counts
from batchctl.cli.context import AppContext
from batchctl.cli.output import (
    format_value,
    json_option,
    print_fields,
    print_json,
    print_table,
)
from batchctl.database import connect

LATEST_ERRORS = 10

# The batch's webhook deliveries per endpoint (docs/webhooks.md), in one grouped query on the
# (batch_id, status) index: the counts, why the endpoint is switched off (a 410, or a whole
# retry schedule failed: the daemon's record_webhook_attempt), and the latest failed delivery's
# error (its HTTP status when it has no error text). Never the endpoint's secret.
_WEBHOOKS = """
    SELECT w.id AS endpoint_id, w.url,
           count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
           count(*) FILTER (WHERE d.status = 'pending') AS pending,
           count(*) FILTER (WHERE d.status = 'failed') AS failed,
           w.disabled_at, CASE WHEN w.disabled_at IS NOT NULL THEN w.disabled_reason END
               AS disabled_reason,
           (array_agg(coalesce(d.last_error, 'HTTP ' || d.last_status_code) ORDER BY d.id DESC)
                FILTER (WHERE d.status = 'failed'))[1] AS last_error
      FROM batchctl.webhook_deliveries d
      JOIN batchctl.webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
     WHERE d.batch_id = %s
     GROUP BY w.tenant_id, w.id
     ORDER BY w.created_at, w.id"""


def _details(conn: psycopg.Connection[Any], batch_id: UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        overview = cur.execute(
            """SELECT o.*, coalesce(o.finished_at, now()) - o.started_at AS elapsed
                 FROM batchctl.batch_overview o WHERE o.batch_id = %s""",
            (batch_id,),
        ).fetchone()
        if overview is None:
            raise batch_not_found(batch_id)
        error_counts = cur.execute(
            """SELECT last_error AS error, count(*) AS entries FROM batchctl.batch_entries
                WHERE batch_id = %s AND last_error IS NOT NULL
                GROUP BY last_error ORDER BY count(*) DESC, last_error""",
            (batch_id,),
        ).fetchall()
        latest_errors = cur.execute(
            """SELECT updated_at, to_phone, lead_name, status, attempts, last_error
                 FROM batchctl.batch_entries
                WHERE batch_id = %s AND last_error IS NOT NULL
                ORDER BY updated_at DESC, entry_index LIMIT %s""",
            (batch_id, LATEST_ERRORS),
        ).fetchall()
        webhooks = cur.execute(_WEBHOOKS, (batch_id,)).fetchall()
    return {
        "batch": overview,
        "error_counts": error_counts,
        "latest_errors": latest_errors,
        "webhooks": webhooks,
    }


@click.command()
@batch_id_argument
@json_option
@click.pass_obj
def show(app: AppContext, batch_id: UUID, as_json: bool) -> None:
    """Show a batch: counts per status, timings, its report, the latest errors, and its
    webhook deliveries per endpoint."""
    with connect(app.read_url()) as conn:
        details = _details(conn, batch_id)
    if as_json:
        print_json(details)
        return
    b = details["batch"]
    print_fields(
        [
            ("batch", b["batch_id"]),
            ("tenant", f"{b['tenant_name']} ({b['tenant_id']})"),
            ("status", b["status"] + (f" ({b['cancel_reason']})" if b["cancel_reason"] else "")),
            ("created (UTC)", b["created_at"]),
            ("started (UTC)", b["started_at"]),
            ("finished (UTC)", b["finished_at"]),
            ("elapsed", b["elapsed"]),
            ("report", b["report_status"] or "when the batch finishes"),
        ]
    )
    click.echo()
    print_counts(b)
    click.echo()
    click.echo("errors:")
    print_table(details["error_counts"], [("entries", "ENTRIES"), ("error", "ERROR")])
    if details["latest_errors"]:
        click.echo()
        click.echo(f"latest errors (up to {LATEST_ERRORS}):")
        print_table(
            details["latest_errors"],
            [
                ("updated_at", "AT (UTC)"),
                ("to_phone", "PHONE"),
                ("lead_name", "NAME"),
                ("status", "STATUS"),
                ("attempts", "ATTEMPTS"),
                ("last_error", "ERROR"),
            ],
        )
    click.echo()
    _print_webhooks(details["webhooks"])


def _print_webhooks(webhooks: list[dict[str, Any]]) -> None:
    """Per endpoint: its URL and counts; a switched-off one's reason, and the error of the
    latest delivery that failed."""
    if not webhooks:
        click.echo("webhooks: none")
        return
    click.echo("webhooks:")
    print_table(
        webhooks,
        [
            ("delivered", "DELIVERED"),
            ("pending", "PENDING"),
            ("failed", "FAILED"),
            ("url", "ENDPOINT"),
        ],
    )
    for w in webhooks:
        if w["disabled_at"] is None and w["last_error"] is None:
            continue
        click.echo(f"{w['url']}:")
        if w["disabled_at"] is not None:
            click.echo(
                f"  switched off since {format_value(w['disabled_at'])} UTC: "
                f"{w['disabled_reason'] or '-'}"
            )
        if w["last_error"] is not None:
            click.echo(f"  latest failed delivery: {w['last_error']}")

"""``batchctl sweep``: the timeouts, for cron (every minute)."""

from __future__ import annotations

import click

from batchctl.cli.context import AppContext
from batchctl.cli.output import json_option, print_json, print_table
from batchctl.client.sync import Client
from batchctl.database import connect


@click.command()
@json_option
@click.pass_obj
def sweep(app: AppContext, as_json: bool) -> None:
    """Run batchctl.sweep(): expired leases, call timeouts, expired batches, call windows,
    stuck reports. Prints what it did; exits 0 unless it failed. Safe to run concurrently
    (a second sweep at the same moment does nothing)."""
    with connect(app.database_url()) as conn:
        summary = Client(conn).sweep()
    if as_json:
        print_json(summary)
    elif summary.get("skipped"):
        click.echo("skipped: another sweep was running")
    else:
        rows = [{"action": action, "count": n} for action, n in sorted(summary.items())]
        print_table(rows, [("action", "ACTION"), ("count", "COUNT")])

"""``batchctl prune``: retention, for cron. Deletes the history of batches finished long ago
through batchctl.prune(), one bounded transaction at a time."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import click

from batchctl.cli.context import AppContext
from batchctl.cli.output import json_option, print_json, print_table
from batchctl.client.sync import Client
from batchctl.database import connect

# What prune() returns a count of, in the order they are printed.
TABLES = ("batches", "reports", "entries", "call_logs", "events")

UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
FORMS = "a whole number and a unit: 90d, 12h, 30m or 45s"


class Duration(click.ParamType):
    """A positive age such as 90d, 12h, 30m or 45s."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration: expected {FORMS}", param, ctx)
        amount, unit = int(match[1]), match[2]
        if amount == 0:
            self.fail(f"{value!r} is not longer than 0: expected {FORMS}", param, ctx)
        try:
            return timedelta(**{UNITS[unit]: amount})
        except OverflowError:
            self.fail(f"{value!r} is too long", param, ctx)


@click.command()
@click.option(
    "--older-than",
    "older_than",
    type=Duration(),
    required=True,
    metavar="AGE",
    help="Prune batches that finished more than AGE ago: 90d, 12h, 30m or 45s.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows deleted per transaction.",
)
@json_option
@click.pass_obj
def prune(app: AppContext, older_than: timedelta, limit: int, as_json: bool) -> None:
    """Delete batches that finished more than --older-than ago and whose report is settled
    (sent, failed or skipped), with their entries, call logs, events and report. Calls
    batchctl.prune() until nothing is left, each call its own transaction of about --limit
    rows, so the daemon's work goes on meanwhile. Safe to run concurrently with itself."""
    totals = dict.fromkeys(TABLES, 0)
    calls = 0
    more = progress = True
    with connect(app.database_url()) as conn:
        client = Client(conn)
        # A call that deleted nothing although more is left found all of it held right now (the
        # daemon acknowledging a hang-up, a report being re-sent): the next run takes it.
        while more and progress:
            result = client.prune(older_than, limit)
            calls += 1
            for table in TABLES:
                totals[table] += result[table]
            more = bool(result["more"])
            progress = any(result[table] for table in TABLES)
    if as_json:
        print_json({"deleted": totals, "calls": calls, "more": more})
        return
    print_table(
        [{"table": table, "deleted": n} for table, n in totals.items()],
        [("table", "TABLE"), ("deleted", "DELETED")],
    )
    if more:
        click.echo("more is left, held by others right now: the next prune takes it")

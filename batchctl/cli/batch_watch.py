"""``batchctl batch watch``: live progress of a batch until it finishes.

Woken by ``batchctl_progress`` notifications (LISTEN), and re-reading on a timer as well, since
a notification can be missed (NOTES: notifications only wake). The counts come from
``batch_status``, which is O(1), so re-reading is cheap."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import click
import psycopg

from batchctl.cli.batch_common import (
    batch_id_argument,
    batch_tenant,
    print_counts,
)
from batchctl.cli.context import AppContext
from batchctl.cli.output import format_duration, json_option, to_json
from batchctl.client.sync import Client
from batchctl.database import connect
from batchctl.statuses import ENTRY_STATUSES

BAR_WIDTH = 30
# Redraw at most this often: a busy batch notifies on every transaction.
MIN_REDRAW_S = 0.1


@dataclass
class Progress:
    """Prints each change of a batch's status: a bar redrawn in place on a terminal, one line
    per change otherwise, one JSON document per change with --json."""

    tty: bool
    as_json: bool
    _last: dict[str, Any] | None = field(default=None, init=False)

    def update(self, status: Mapping[str, Any]) -> None:
        if status == self._last:
            return
        self._last = dict(status)
        if self.as_json:
            click.echo(to_json(status, indent=None))
        elif self.tty:
            click.echo(f"\r\x1b[K{self._bar(status)}", nl=False)
        else:
            click.echo(f"{datetime.now(UTC):%H:%M:%S} {self._counts(status)}")

    def finish(self, status: Mapping[str, Any]) -> None:
        if self.as_json:
            return
        if self.tty:
            click.echo()
        started = status["started_at"] or status["created_at"]
        elapsed = datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(started)
        click.echo(f"batch {status['batch_id']} {status['status']} in {format_duration(elapsed)}")
        print_counts(status)

    @staticmethod
    def _done(status: Mapping[str, Any]) -> tuple[int, int]:
        return status["total"] - status["pending"], status["total"]

    def _counts(self, status: Mapping[str, Any]) -> str:
        done, total = self._done(status)
        counts = "  ".join(f"{name} {status[name]}" for name in ENTRY_STATUSES)
        return f"{status['status']}  {done}/{total} done  {counts}"

    def _bar(self, status: Mapping[str, Any]) -> str:
        done, total = self._done(status)
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        percent = 100 * done // total if total else 100
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%  {self._counts(status)}"


def wait_for_progress(conn: psycopg.Connection[Any], batch_id: UUID, timeout: float) -> None:
    """Returns when ``batch_id`` notifies progress, or after ``timeout`` seconds. No query may
    run inside the loop: notifies() holds the connection (NOTES)."""
    for notify in conn.notifies(timeout=timeout):
        if notify.payload == str(batch_id):
            return


@click.command()
@batch_id_argument
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Re-read at least this often (seconds), notified or not.",
)
@json_option
@click.pass_obj
def watch(app: AppContext, batch_id: UUID, interval: float, as_json: bool) -> None:
    """Follow a batch live until it finishes, then print the final counts."""
    progress = Progress(tty=sys.stdout.isatty(), as_json=as_json)
    with connect(app.database_url()) as conn:
        tenant_id = batch_tenant(conn, batch_id)  # an unknown batch fails here, before listening
        # Listen before the first read, so no change between the two goes unseen.
        conn.execute("LISTEN batchctl_progress")
        client = Client(conn)
        while True:
            status = client.batch_status(tenant_id, batch_id)
            progress.update(status)
            if status["finished_at"] is not None:
                break
            wait_for_progress(conn, batch_id, interval)
            time.sleep(MIN_REDRAW_S)
    progress.finish(status)

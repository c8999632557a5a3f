"""``batchctl report``: a batch's workbook on demand, and (re)sending it by e-mail."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from uuid import UUID

import click

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.cli.options import smtp_options
from batchctl.config import SmtpSettings
from batchctl.report.on_demand import build_or_send
from batchctl.report.outbox import ReportFailed


@click.command()
@click.argument("batch_id", type=click.UUID)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.xlsx",
    help="Write the workbook here (any batch; an unfinished one gets an interim report).",
)
@click.option(
    "--send",
    is_flag=True,
    help="E-mail the report of a finished batch now, sent before or not; the outbox records "
    "it, so a running daemon does not send it at the same moment.",
)
@click.option(
    "--to",
    "recipients",
    multiple=True,
    metavar="EMAIL",
    help="With --send: send to these addresses (repeatable) instead of the batch's report_to.",
)
@smtp_options
@click.pass_obj
def report(
    app: AppContext,
    batch_id: UUID,
    out: Path | None,
    send: bool,
    recipients: tuple[str, ...],
    smtp: SmtpSettings,
) -> None:
    """Write a batch's Excel report (--out) and/or e-mail it (--send)."""
    if out is None and not send:
        raise click.UsageError("nothing to do: give --out FILE.xlsx, --send, or both")
    if recipients and not send:
        raise click.UsageError("--to needs --send")
    # Building a workbook only reads (from a standby, given --read-url); sending records the
    # attempt in the outbox, on the primary.
    url = app.database_url() if send else app.read_url()
    worker = f"{socket.gethostname()}:{os.getpid()}:cli"
    try:
        built = asyncio.run(
            build_or_send(
                url, batch_id, send=smtp if send else None, recipients=recipients, worker=worker
            )
        )
    except ReportFailed as exc:
        raise UserError(
            f"sending the report of batch {batch_id} failed: {exc} "
            "(recorded in the outbox, which retries it)"
        ) from exc
    if send:
        click.echo(f"sent the report of batch {batch_id}")
    if out is not None:
        _write(out, built.xlsx)
        note = "" if built.summary.finished else f" (interim: the batch is {built.summary.status})"
        click.echo(f"wrote {out}{note}")


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a half-written .xlsx would not open."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)

"""``batchctl demo``: a real campaign on this machine in under a minute (see batchctl.demo)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import click

from batchctl.cli.errors import UserError


@click.command()
@click.option(
    "--leads",
    type=click.IntRange(1, 200),
    default=200,
    show_default=True,
    help="how many of examples/leads.csv to call",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("batchctl-demo-report.xlsx"),
    show_default=True,
    help="where to save the Excel report the daemon e-mails",
)
@click.option(
    "--dashboard",
    "keep_dashboard",
    is_flag=True,
    help="keep the dashboard (whose link is printed as the campaign starts) up after the "
    "campaign, until Ctrl-C",
)
def demo(leads: int, report_path: Path, keep_dashboard: bool) -> None:
    """Run a whole campaign here: embedded PostgreSQL, the LiveKit simulator, a local mail
    server, a local webhook receiver, the daemon and the dashboard; ends with the e-mailed
    report and the webhook events received. Leaves nothing running."""
    try:
        from batchctl.demo import run_demo
    except ImportError as exc:  # aiosmtpd, the demo's mail server, is an extra
        raise UserError(f"{exc}: the demo needs pip install 'batchctl[demo]'") from exc
    click.echo("batchctl demo: a whole campaign on this machine, nothing outside it\n")
    try:
        keep = until_interrupted if keep_dashboard else None
        result = run_demo(leads, report_path, click.echo, keep_dashboard=keep)
    except subprocess.CalledProcessError as exc:
        raise UserError(f"`{' '.join(exc.cmd[2:])}` failed with status {exc.returncode}") from exc
    if result.report is None:
        raise UserError("the batch finished but its report never arrived")
    click.echo(f"\ndone: the batch is {result.batch_status}; nothing is left running.")


def until_interrupted() -> None:
    click.echo("press Ctrl-C to stop it and end the demo")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        click.echo()
    finally:
        signal.signal(signal.SIGTERM, previous)

"""``batchctl demo``: a whole campaign on this machine, with nothing outside it.

An embedded PostgreSQL in a temporary directory, the LiveKit SIMULATOR (not LiveKit: its voice
agents report scripted outcomes), a local mail server, a local webhook receiver and a real
``batchctl daemon`` process. The campaign is created and followed with the same commands a
person would type, shown as they run; the report the daemon e-mails is saved next to the
caller, and the events the receiver got (signatures verified) are counted. Everything it
started is stopped and deleted at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from batchctl.config import LiveKitCredentials
from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.auth import OPERATOR, Token
from batchctl.dashboard.auth import new_secret as new_token
from batchctl.dashboard.threaded import run_dashboard
from batchctl.demo.mailbox import Mailbox
from batchctl.demo.receiver import Receiver, new_secret
from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade
from batchctl.resources import examples_dir
from batchctl.sim import Scenario
from batchctl.sim.threaded import RunningSimulator, run_simulator

CREDENTIALS = LiveKitCredentials("demo-key", "demo-secret-of-at-least-thirty-two-bytes")
# Calls of a few seconds: long enough to watch, short enough for a campaign in under a minute.
SCENARIO = {
    "seed": 2026,
    "mode": "agent",
    "join_delay_s": [0.1, 0.4],
    "ring_time_s": [0.4, 2.0],
    "call_length_s": [1.0, 3.5],
}
TENANT = "Demo Dental"
DASHBOARD_PORT = 8090  # `batchctl dashboard`'s default
REPORT_TO = "ops@demo.example"
# The order the webhook line lists event types in (docs/webhooks.md); others follow.
EVENT_TYPES = ("call.ended", "entry.finished", "batch.started", "batch.paused", "batch.resumed",
               "batch.finished", "report.sent")  # fmt: skip
# How long to wait, after the report arrived, for the last deliveries (report.sent is queued
# only once the daemon records the e-mail as sent).
DELIVERIES_TIMEOUT = 10.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    batch_status: str
    report: Path | None  # the workbook the daemon e-mailed, saved; None if none arrived
    webhooks: str  # what the local receiver got, as shown


def run_demo(
    leads: int, report_path: Path, echo: Echo, *, keep_dashboard: Callable[[], None] | None = None
) -> DemoResult:
    """The whole demo. ``keep_dashboard``: called once the campaign is over, with the dashboard
    still up (it returns when the person is done looking); None: everything stops at once."""
    with tempfile.TemporaryDirectory(prefix="batchctl-demo-") as scratch:
        workdir = Path(scratch)
        database = start_embedded(workdir / "pgdata", dbname="batchctl", cleanup_mode="delete")
        try:
            upgrade(database)
            scenario = Scenario.from_dict(SCENARIO)
            secret = new_secret()
            with (
                run_simulator(database, scenario, CREDENTIALS) as sim,
                Mailbox() as mailbox,
                Receiver(secret) as receiver,
                demo_dashboard(database, echo) as board,
            ):
                echo(f"e-mail: a local mail server on 127.0.0.1:{mailbox.port}")
                echo(f"webhooks: a local receiver at {receiver.url}")
                with daemon(database, sim, mailbox, workdir / "daemon.log", echo):
                    hook = (receiver.url, secret)
                    status = campaign(database, sample_leads(leads, workdir), hook, echo)
                    message = mailbox.wait_for_message(timeout=30)
                    undelivered = wait_for_deliveries(database, DELIVERIES_TIMEOUT)
                webhooks = webhook_summary(receiver, undelivered)
                if keep_dashboard is not None:
                    echo(f"\nthe dashboard stays up at {board}")
                    keep_dashboard()
        finally:
            database.cleanup()
        if message is None:
            echo("no report arrived (see the daemon's log above)")
            echo(f"\n{webhooks}")
            return DemoResult(status, None, webhooks)
        attachment = next(message.iter_attachments())
        report_path.write_bytes(attachment.get_content())
        echo(f"\nthe e-mail the mail server received: to {message['To']}, "
             f'"{message["Subject"]}", attachment {attachment.get_filename()}')  # fmt: skip
        echo(f"the report: {report_path.resolve()}")
        echo(f"\n{webhooks}")
        return DemoResult(status, report_path, webhooks)


@contextmanager
def demo_dashboard(database: str, echo: Echo) -> Iterator[str]:
    """`batchctl dashboard` on the demo's database, at 8090 if free; yields its sign-in link."""
    settings = DashboardSettings(database, [Token(OPERATOR, new_token())])
    with ExitStack() as stack:
        try:
            board = stack.enter_context(run_dashboard(settings, port=DASHBOARD_PORT))
        except OSError:  # the port is taken (a dashboard of the user's own, say): any free one
            board = stack.enter_context(run_dashboard(settings))
        link = f"{board.url}/login?token={settings.tokens[0].secret}"
        echo(f"dashboard: {link} (open it to watch the campaign live)")
        yield link


def sample_leads(count: int, workdir: Path) -> Path:
    """examples/leads.csv, or its first ``count`` leads."""
    source = examples_dir() / "leads.csv"
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    if count >= len(lines) - 1:
        return source
    sample = workdir / "leads.csv"
    sample.write_text("".join(lines[: count + 1]), encoding="utf-8")
    return sample


@contextmanager
def daemon(
    database: str, sim: RunningSimulator, mailbox: Mailbox, log: Path, echo: Echo
) -> Iterator[None]:
    command = batchctl_command(
        "daemon", "--livekit-url", sim.url, "--livekit-api-key", CREDENTIALS.api_key,
        "--livekit-api-secret", CREDENTIALS.api_secret, "--agent-name", "demo-agent",
        "--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox.port),
        "--smtp-from", "batchctl-demo@localhost", "--sweep-every", "1", "--poll-interval", "0.5",
        # The receiver is plain http on 127.0.0.1, which the sender refuses unless allowed.
        "--allow-private-webhooks",
    )  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=environment(database)
        )
    echo(f"daemon: batchctl daemon (pid {process.pid})")
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        if process.wait(60) != 0:
            echo(f"the daemon exited with status {process.returncode}; its log:")
            echo(log.read_text(errors="replace"))


def campaign(database: str, leads: Path, hook: tuple[str, str], echo: Echo) -> str:
    """Creates the tenant, its webhook endpoint (url, secret) and the batch and follows it to
    the end; returns its final status."""
    run(echo, database, "tenant", "create", TENANT, "--max-concurrent", "25",
        "--timezone", "America/New_York")  # fmt: skip
    # The simulator's calls reach no one, and the demo runs at any hour: its tenant's policy
    # switches the calling-hours rules off (docs/compliance.md), which would hold the US leads
    # back until 08:00 in their zones. A real tenant keeps them on.
    run(echo, database, "policy", "set", TENANT, '{"jurisdiction_rules": false}')
    # Before the batch: events are queued for the endpoints there are when they happen. The
    # secret is the receiver's, given rather than generated, so that it can verify signatures.
    url, secret = hook
    run(echo, database, "endpoint", "add", TENANT, url, "--secret", secret)
    run(echo, database, "batch", "create", TENANT, "--csv", str(leads), "--default-region", "US",
        "--wave-size", "25", "--retry-on", "no_answer,busy", "--max-attempts", "2",
        "--retry-delay", "3", "--report-to", REPORT_TO, "--report-delay", "1")  # fmt: skip
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT id FROM batchctl.batches ORDER BY created_at DESC").fetchone()
        assert row is not None
        batch_id = str(row[0])
    run(echo, database, "batch", "watch", batch_id)
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT status FROM batchctl.batches WHERE id = %s", (batch_id,)
        ).fetchone()
        assert row is not None
        return str(row[0])


def wait_for_deliveries(database: str, timeout: float) -> int:
    """Waits (at most ``timeout`` seconds) until the report is sent or given up and every
    webhook delivery is delivered; returns how many deliveries are not."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database, autocommit=True) as conn:
        while True:
            row = conn.execute(
                """SELECT (SELECT count(*) FROM batchctl.webhook_deliveries
                            WHERE status <> 'delivered'),
                          EXISTS (SELECT FROM batchctl.reports
                                   WHERE status IN ('pending', 'sending'))"""
            ).fetchone()
            assert row is not None
            undelivered, report_unsent = int(row[0]), bool(row[1])
            if (undelivered == 0 and not report_unsent) or time.monotonic() >= deadline:
                return undelivered
            time.sleep(0.2)


def webhook_summary(receiver: Receiver, undelivered: int) -> str:
    counts = receiver.counts
    types = [t for t in EVENT_TYPES if counts[t]] + sorted(set(counts) - set(EVENT_TYPES))
    by_type = ", ".join(f"{t} {counts[t]}" for t in types)
    verified = (
        "all signatures verified"
        if receiver.rejected == 0
        else f"{receiver.rejected} requests with a bad signature rejected"
    )
    if receiver.received:
        line = f"webhooks: {receiver.received} events received at {receiver.url}, {verified}"
        line += f": {by_type}"
    else:
        line = f"webhooks: no events received at {receiver.url}"
        line += f" ({receiver.rejected} rejected: bad signature)" if receiver.rejected else ""
    if undelivered:
        wait = f"{DELIVERIES_TIMEOUT:g} s"
        line += f"\n  {undelivered} deliveries still pending after {wait} (not counted above)"
    return line


def run(echo: Echo, database: str, *args: str) -> None:
    """Runs a batchctl command as a person would, showing it and its output."""
    echo("\n$ batchctl " + " ".join(_quoted(a) for a in args))
    sys.stdout.flush()
    subprocess.run(batchctl_command(*args), env=environment(database), check=True)


def batchctl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchctl", *args]


def environment(database: str) -> dict[str, str]:
    return {**os.environ, "BATCHCTL_DATABASE_URL": database}


def _quoted(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg

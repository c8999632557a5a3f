"""batchctl's long-running commands (daemon, webhook) as real processes for tests: started,
SIGKILLed, SIGTERMed and restarted like in production, talking to the LiveKit simulator and the
test's database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from clitools import batchctl_command
from pgtools import one_row
from simulator import API_KEY, API_SECRET

AGENT = "test-agent"
# Fast clocks for tests: leases of 2 s reclaimed by a sweep every 0.3 s, polls every 0.2 s.
FAST = ("--poll-interval", "0.2", "--sweep-every", "0.3", "--lease", "2")


def daemon_command(
    database_url: str, livekit_url: str, *extra: str, secret: str = API_SECRET
) -> list[str]:
    """``batchctl daemon`` against the LiveKit at ``livekit_url`` (the tests' simulator)."""
    return batchctl_command(database_url, "daemon",
        "--livekit-url", livekit_url, "--livekit-api-key", API_KEY,
        "--livekit-api-secret", secret, "--agent-name", AGENT,
        "--log-level", "DEBUG", *FAST, *extra,
    )  # fmt: skip


class Service:
    """One process; its log goes to a file so a failing test can show it."""

    def __init__(self, command: Sequence[str], log: Path) -> None:
        self.command = list(command)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (0: it drained and exited cleanly)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running(*services: Service) -> Iterator[tuple[Service, ...]]:
    """Starts the services; on leaving, stops each with SIGTERM and requires a clean exit."""
    for s in services:
        s.start()
    try:
        yield services
    finally:
        for d in services:
            if d.process is not None and d.process.poll() is None:
                try:
                    code = d.stop()
                except subprocess.TimeoutExpired:
                    d.kill()
                    raise AssertionError(f"{d.log.name} ignored SIGTERM:\n{d.tail()}") from None
                assert code == 0, f"{d.log.name} exited {code}:\n{d.tail()}"


def wait_finished(
    conn: psycopg.Connection[Any],
    batch_ids: Sequence[UUID],
    timeout: float,
    services: Sequence[Service] = (),
) -> None:
    """Waits until every batch has finished_at; on time-out fails with their counters and the
    daemons' logs."""
    deadline = time.monotonic() + timeout
    query = "select count(*) as n from batchctl.batches where id = any(%s) and finished_at is null"
    while one_row(conn, query, (list(batch_ids),))["n"]:
        if time.monotonic() > deadline:
            rows = conn.execute(
                "select * from batchctl.batch_overview where batch_id = any(%s)", (list(batch_ids),)
            ).fetchall()
            logs = "\n\n".join(s.tail() for s in services)
            raise AssertionError(f"batches not finished after {timeout} s: {rows}\n{logs}")
        time.sleep(0.05)

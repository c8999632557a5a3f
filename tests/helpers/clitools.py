"""Running the command line in tests: in-process through click's runner, or as a subprocess,
and checking the shape of its answers."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from batchctl.cli import cli


def batchctl_command(db_url: str, *args: str) -> list[str]:
    """``batchctl --database-url DB_URL ARGS``, run by this interpreter."""
    return [sys.executable, "-m", "batchctl", "--database-url", db_url, *args]


def run_batchctl(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line as a subprocess, as a person would run it."""
    return subprocess.run(
        batchctl_command(db_url, *args), capture_output=True, text=True, timeout=60
    )


UNREACHABLE = "postgresql://nobody@/nowhere?host=/nonexistent-batchctl-socket-dir&connect_timeout=2"


def invoke(db_url: str, *args: str) -> Result:
    """The command line in-process. A crash (any exception but click's own exits) fails the
    test instead of passing for a user error: both exit with status 1."""
    result = CliRunner().invoke(cli, ["--database-url", db_url, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def one_line_error(result: Result, *needles: str) -> str:
    """Asserts the user-error shape: exit 1, a single "error: ..." line on stderr."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"select count(*) as n from batchctl.{table}").fetchone()
    assert row is not None
    return row["n"]


def create_tenant(db_url: str, name: str = "acme", *args: str) -> str:
    result = invoke(db_url, "tenant", "create", name, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()

"""`batchctl db psql`: the session the README's worked example starts from."""

from __future__ import annotations

import subprocess
import sys


def batchctl(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batchctl", "--database-url", db_url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_db_psql_runs_sql_against_the_database(db_url: str) -> None:
    """Extra arguments reach psql, which talks to the migrated database."""
    result = batchctl(db_url, "db", "psql", "-Atc", "select batchctl.create_tenant('psql', 2)")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 36  # a tenant id (uuid)


def test_db_psql_exit_status_is_psql_s(db_url: str) -> None:
    """A failing statement makes the command fail too, with psql's message."""
    result = batchctl(
        db_url, "db", "psql", "-v", "ON_ERROR_STOP=1", "-c", "select batchctl.create_tenant('')"
    )
    assert result.returncode != 0
    assert "a tenant needs a non-empty name" in result.stderr

"""`batchctl db psql`: the session the README's worked example starts from."""

from __future__ import annotations

import subprocess
import sys


def test_db_psql_runs_sql_against_the_database(db_url: str) -> None:
    """Extra arguments reach psql, which talks to the migrated database."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchctl",
            "--database-url",
            db_url,
            "db",
            "psql",
            "-Atc",
            "select batchctl.create_tenant('from psql', 2)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert len(out.strip()) == 36  # a tenant id (uuid)


def test_db_psql_exit_status_is_psql_s(db_url: str) -> None:
    """A failing statement makes the command fail too, with psql's message."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchctl",
            "--database-url",
            db_url,
            "db",
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "select batchctl.create_tenant('')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "a tenant needs a non-empty name" in result.stderr

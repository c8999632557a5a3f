"""`batchctl db psql`: the session the README's worked example starts from."""

from __future__ import annotations

from clitools import run_batchctl


def test_db_psql_runs_sql_against_the_database(db_url: str) -> None:
    """Extra arguments reach psql, which talks to the migrated database."""
    result = run_batchctl(db_url, "db", "psql", "-Atc", "select batchctl.create_tenant('psql', 2)")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 36  # a tenant id (uuid)


def test_db_psql_exit_status_is_psql_s(db_url: str) -> None:
    """A failing statement makes the command fail too, with psql's message."""
    result = run_batchctl(
        db_url, "db", "psql", "-v", "ON_ERROR_STOP=1", "-c", "select batchctl.create_tenant('')"
    )
    assert result.returncode != 0
    assert "a tenant needs a non-empty name" in result.stderr

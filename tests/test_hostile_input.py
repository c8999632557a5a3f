"""Hostile input: command-line arguments that are not UTF-8. Each gets a one-line answer naming
what is wrong, never a traceback, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from clitools import count, run_batchctl
from sqlapi import SqlApi, phones

# '{"a":{"a":...1...}}' 10,000 levels deep: json.loads raises RecursionError on it.
DEEP = '{"a":' * 10000 + "1" + "}" * 10000


def one_line(stderr: str) -> str:
    """The single line of a user error on stderr (no traceback, nothing else)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# --- 1. command-line arguments that are not UTF-8 ---------------------------------------------


def test_an_argument_that_is_not_utf8_is_named_and_changes_nothing(
    db_url: str, conn: Any, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme")
    batch = api.create_batch(tenant, phones(2))
    # Python decodes argv with surrogateescape: "\udcff" is the byte 0xff on the command line.
    bad_name = run_batchctl(db_url, "tenant", "create", "Caf\udce9")
    assert bad_name.returncode == 1
    assert 'argument 5 ("Caf\\xe9", after "create") is not valid UTF-8' in one_line(bad_name.stderr)
    bad_reason = run_batchctl(db_url, "batch", "cancel", str(batch), "--reason=gone\udcff")
    assert bad_reason.returncode == 1
    assert '("--reason=gone\\xff", after "' in one_line(bad_reason.stderr)
    # A file name that is not UTF-8 is refused too (see batchctl.cli.non_utf8_input).
    leads = tmp_path / "le\udcffads.csv"
    leads.write_text("phone\n+14155550100\n")
    bad_file = run_batchctl(db_url, "batch", "create", "acme", "--csv", str(leads))
    assert bad_file.returncode == 1
    line = one_line(bad_file.stderr)
    assert 'after "--csv") is not valid UTF-8' in line and "UTF-8 name or link" in line
    assert count(conn, "tenants") == 1 and count(conn, "batches") == 1
    assert api.batch_status(tenant, batch)["status"] == "running"


def test_a_setting_that_is_not_utf8_is_named_but_not_shown() -> None:
    env = {**os.environ, "BATCHCTL_DATABASE_URL": "postgresql://x@/db", "SMTP_PASSWORD": "s\udcff"}
    result = subprocess.run(
        [sys.executable, "-m", "batchctl", "tenant", "list"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line == "error: environment variable SMTP_PASSWORD is not valid UTF-8"

"""Every default has one home, and what repeats it elsewhere says the same: the batch options'
defaults are the database's (default_options()), which `batch create --help` quotes; the claim's
lease and size are DaemonSettings', which claim_entries' own parameter defaults must match."""

from __future__ import annotations

import re
from typing import Any

import click
import psycopg

from batchctl.cli.batch_create import create
from batchctl.daemon import DaemonSettings
from pgtools import one_row, one_value

QUOTED_DEFAULT = re.compile(r"\[(\d+)\]")


def test_batch_create_help_quotes_the_database_defaults(conn: psycopg.Connection[Any]) -> None:
    defaults = one_row(conn, "select batchctl.default_options() as d")["d"]
    quoted = {
        param.name: int(found.group(1))
        for param in create.params
        if isinstance(param, click.Option)
        and param.help
        and (found := QUOTED_DEFAULT.search(param.help))
    }
    assert len(quoted) >= 8, quoted  # every numeric option says its default
    assert quoted == {name: defaults[name] for name in quoted}


def test_the_daemons_claim_defaults_are_claim_entries(conn: psycopg.Connection[Any]) -> None:
    args = one_value(conn, "select pg_get_function_arguments('batchctl.claim_entries'::regproc)")
    sql_defaults = dict(re.findall(r"(p_\w+) integer DEFAULT (\d+)", args))
    assert sql_defaults == {
        "p_limit": str(DaemonSettings.claim_limit),
        "p_lease_seconds": str(DaemonSettings.lease_seconds),
    }

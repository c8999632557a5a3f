"""What the ``batch`` commands share: finding a batch's tenant (the tenant-facing SQL functions
take it first; the command line acts as an operator over all tenants) and showing counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import click
import psycopg

from batchctl.cli.errors import UserError
from batchctl.cli.output import print_table
from batchctl.statuses import ENTRY_STATUSES

# The entry statuses in the order an entry moves through them (batch_status has a count of each).
COUNT_COLUMNS = [
    ("total", "TOTAL"),
    *((status, status.upper()) for status in ENTRY_STATUSES),
    ("duplicates", "DUPLICATES"),
    ("dnc_skipped", "DNC SKIPPED"),
]

batch_id_argument = click.argument("batch_id", metavar="BATCH", type=click.UUID)


def batch_tenant(conn: psycopg.Connection[Any], batch_id: UUID) -> UUID:
    row = conn.execute(
        "SELECT tenant_id FROM batchctl.batches WHERE id = %s", (batch_id,)
    ).fetchone()
    if row is None:
        raise batch_not_found(batch_id)
    return row[0]


def batch_not_found(batch_id: UUID) -> click.ClickException:
    return UserError(f"batch {batch_id} not found (batchctl batch list shows them)")


def print_counts(status: Mapping[str, Any]) -> None:
    print_table([status], COUNT_COLUMNS)

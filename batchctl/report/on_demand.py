"""A report asked for by a person (`batchctl report`): built on one connection, no pool, and
optionally (re)sent through the outbox (claim_report_now) so that no daemon sends it meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from batchctl.config import SmtpSettings
from batchctl.database import APPLICATION_NAME
from batchctl.report.build import BuiltReport, build_report
from batchctl.report.outbox import send_report_now


@dataclass
class OneConnection:
    """The outbox's ConnectionSource over a single connection."""

    conn: psycopg.AsyncConnection[Any]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        yield self.conn


async def build_or_send(
    url: str,
    batch_id: UUID,
    *,
    send: SmtpSettings | None,
    recipients: Sequence[str],
    worker: str,
) -> BuiltReport:
    """The report of ``batch_id``; mailed through ``send`` when given (to ``recipients``, or
    else the batch's own), which raises outbox.ReportFailed when that fails."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, application_name=APPLICATION_NAME
    ) as conn:
        if send is None:
            return await build_report(conn, batch_id)
        return await send_report_now(OneConnection(conn), send, batch_id, worker, recipients)

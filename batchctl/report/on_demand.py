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
    """The outbox's ConnectionSource for one caller: one connection, opened again if it was
    lost (so recording the outcome survives a database restart, as it does with a pool)."""

    url: str
    conn: psycopg.AsyncConnection[Any] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, application_name=APPLICATION_NAME
            )
        yield self.conn

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


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
    source = OneConnection(url)
    try:
        if send is None:
            async with source.connection() as conn:
                return await build_report(conn, batch_id)
        return await send_report_now(source, send, batch_id, worker, recipients)
    finally:
        await source.close()

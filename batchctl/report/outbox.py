"""The daemon's report step and `batchctl report --send`: claim a report of the outbox
(sql/070_reports.sql, sql/085_report_views.sql), build it, mail it, mark it sent or failed.

A failure of any kind (SMTP down, a refused recipient, a bug in the builder) is the report's:
report_failed records it and the outbox retries with backoff. Nothing here writes to the batch.
Two senders never send one report at once: claims are SKIP LOCKED and leased. A sender that dies
mid-send leaves the lease to expire and sweep() re-queues the report, so delivery is at least
once in that case (sent, then the process died before report_sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from batchctl.client.aio import AsyncClient, ConnectionSource
from batchctl.client.rows import ReportClaim
from batchctl.config import SmtpSettings
from batchctl.database import error_message
from batchctl.report.build import BuiltReport, build_report
from batchctl.report.mail import compose, send

MAX_ERROR_CHARS = 2000
# Recording an outcome is retried over a lost connection: a report that was sent but not
# recorded as sent would be sent again once its lease runs out. A claim is not: the report loop
# (or the person) tries again.
RECORD_RETRY_S = 60.0

log = logging.getLogger(__name__)


class ReportFailed(Exception):
    """Building or sending a report failed; the error is recorded in the outbox."""


async def send_due_reports(
    pool: AsyncConnectionPool,
    smtp: SmtpSettings,
    worker: str,
    stopping: asyncio.Event | None = None,
) -> float | None:
    """Sends every due report, one at a time (until ``stopping`` is set: a daemon shutting
    down finishes the one in hand), then returns the seconds until the next pending one is due
    (None: none is pending), so the daemon can sleep exactly that long."""
    claims = AsyncClient(pool, retry_for=0)
    while (
        not (stopping and stopping.is_set())
        and (claim := await claims.claim_report(worker)) is not None
    ):
        try:
            await deliver(pool, smtp, claim)
        except ReportFailed as exc:  # recorded by deliver; the outbox retries it with backoff
            log.warning(
                "report of batch %s (attempt %d) failed: %s", claim.batch_id, claim.attempt, exc
            )
    return await seconds_until_next_report(pool)


async def send_report_now(
    source: ConnectionSource,
    smtp: SmtpSettings,
    batch_id: UUID,
    worker: str,
    recipients: Sequence[str] | None = None,
) -> BuiltReport:
    """(Re)sends a finished batch's report now, whatever its outbox status, to ``recipients``
    or else its own. Raises ReportFailed (recorded, so the outbox retries it), or a psycopg
    error when the report cannot be claimed (unknown or unfinished batch, being sent now)."""
    claim = await AsyncClient(source, retry_for=0).claim_report_now(batch_id, worker, recipients)
    return await deliver(source, smtp, claim)


async def deliver(source: ConnectionSource, smtp: SmtpSettings, claim: ReportClaim) -> BuiltReport:
    """Builds and mails a claimed report, then marks it sent, or failed (and raises
    ReportFailed) whatever went wrong."""
    records = AsyncClient(source, retry_for=RECORD_RETRY_S)
    try:
        async with source.connection() as conn:
            report = await build_report(conn, claim.batch_id)
        message = await asyncio.to_thread(compose, report, claim.recipients, smtp.sender)
        await asyncio.to_thread(send, smtp, message)
    except Exception as exc:  # any failure at all is the report's, never the batch's
        error = failure_text(exc)
        await records.report_failed(claim.batch_id, error)
        raise ReportFailed(error) from exc
    await records.report_sent(claim.batch_id)
    log.info("report of batch %s sent to %s", claim.batch_id, ", ".join(claim.recipients))
    return report


async def seconds_until_next_report(source: ConnectionSource) -> float | None:
    async with source.connection() as conn:
        cur = await conn.execute(
            "SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8"
            "  FROM batchctl.reports WHERE status = 'pending'"
        )
        row = await cur.fetchone()
    return None if row is None or row[0] is None else max(0.0, row[0])


def failure_text(exc: BaseException) -> str:
    """One line naming the kind of failure and its message, for reports.last_error."""
    return f"{type(exc).__name__}: {error_message(exc)}"[:MAX_ERROR_CHARS]

"""The report outbox (sql/070) and the report's figures (sql/085)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from psycopg.rows import class_row

from batchctl.client.calls import Call, first, first_or_none, void
from batchctl.client.rows import ReportClaim
from batchctl.client.summary import BatchSummary
from batchctl.database import tolerate_undecodable_json


def claim_report(worker: str) -> Call[ReportClaim | None]:
    """A due report, or None."""
    q = "SELECT * FROM batchctl.claim_report(%s)"
    return Call(q, (worker,), class_row(ReportClaim), first_or_none)


def claim_report_now(
    batch_id: UUID, worker: str, recipients: Sequence[str] | None = None
) -> Call[ReportClaim]:
    """Raises instead of claiming nothing (an unknown or unfinished batch, one being sent)."""
    q = "SELECT * FROM batchctl.claim_report_now(%s, %s, %s)"
    params = (batch_id, worker, list(recipients) if recipients else None)
    return Call(q, params, class_row(ReportClaim), first)


def report_sent(batch_id: UUID) -> Call[None]:
    return void("SELECT batchctl.report_sent(%s)", batch_id)


def report_failed(batch_id: UUID, error: str) -> Call[None]:
    return void("SELECT batchctl.report_failed(%s, %s)", batch_id, error)


def report_summary(batch_id: UUID) -> Call[BatchSummary]:
    """Raises BC002 for a batch the caller cannot see. A JSON value Python cannot decode comes as
    its text (UndecodedJson): one odd lead must not cost the whole report."""
    q = "SELECT * FROM batchctl.report_summary(%s)"
    return Call(q, (batch_id,), class_row(BatchSummary), first, tolerate_undecodable_json)

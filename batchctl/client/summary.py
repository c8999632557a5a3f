"""The row of batchctl.report_summary: a batch's figures, as its report shows them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from batchctl.database import UndecodedJson

# Entry statuses in the order the report lists them: outcomes first, then what is still open.
ENTRY_STATUSES = ("completed", "declined", "failed", "cancelled", "queued", "running", "dispatched")


@dataclass(frozen=True)
class BatchSummary:
    """One row of ``batchctl.report_summary`` (field names are its columns)."""

    batch_id: UUID
    tenant_id: UUID
    tenant_name: str
    status: str
    options: dict[str, Any] | UndecodedJson
    cancel_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    as_of: datetime  # the snapshot's time: what "now" means for an unfinished batch
    total: int
    queued: int
    running: int
    dispatched: int
    completed: int
    failed: int
    declined: int
    cancelled: int
    duplicates: int
    dnc_skipped: int
    outcomes: dict[str, int]  # entries per last call status; "none": never called
    calls: int
    calls_per_attempt: dict[str, int]  # JSON object: attempt number (as text) -> call logs
    median_duration_s: float | None
    p90_duration_s: float | None
    total_duration_s: Decimal | None
    # The keys of the entries' last call analysis and of their leads' context, each most used
    # first, then by name, at most 1000: the Calls sheet's columns (key_columns.py).
    analysis_keys: list[str]
    context_keys: list[str]
    unsplit_contexts: int  # contexts that may have to be shown whole, as text (see the SQL)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def pending(self) -> int:
        return self.queued + self.running + self.dispatched

    @property
    def counts(self) -> dict[str, int]:
        """Entries per status, in ENTRY_STATUSES order."""
        return {status: getattr(self, status) for status in ENTRY_STATUSES}

    @property
    def attempts(self) -> list[tuple[int, int]]:
        """(attempt number, call logs) in attempt order."""
        return sorted((int(k), n) for k, n in self.calls_per_attempt.items())

    @property
    def duration(self) -> timedelta | None:
        """Started to finished, or to the snapshot while the batch is still open."""
        if self.started_at is None:
            return None
        return (self.finished_at or self.as_of) - self.started_at

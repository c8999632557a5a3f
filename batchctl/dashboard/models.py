"""What the dashboard's pages show, as plain values: read by queries.py, rendered by the
templates (pages.py). Nothing here touches the database or the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

# Every place that colours an outcome uses this order and the CSS class ``o-<name>``, so a
# colour means one thing on every page.
OUTCOMES = ("completed", "declined", "failed", "cancelled", "in_progress", "queued")


@dataclass(frozen=True)
class Counts:
    """A batch's entries by status (the batch row's counters, exact at every commit)."""

    total: int
    queued: int
    running: int
    dispatched: int
    completed: int
    failed: int
    declined: int
    cancelled: int

    @property
    def in_progress(self) -> int:
        return self.running + self.dispatched

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.declined + self.cancelled

    def of(self, outcome: str) -> int:
        """The count of one of OUTCOMES."""
        return int(getattr(self, outcome))

    def percent(self, outcome: str) -> float:
        return 100.0 * self.of(outcome) / self.total if self.total else 0.0


@dataclass(frozen=True)
class BatchRow:
    """One batch as the campaigns page lists it (and the batch page's header)."""

    id: UUID
    tenant_id: UUID
    tenant_name: str
    status: str
    counts: Counts
    live_calls: int  # this batch's calls ringing or talking now
    tenant_live_calls: int  # the tenant's, across its batches: what its cap limits
    tenant_cap: int  # tenants.max_concurrent_calls
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report_status: str | None  # reports.status; None until the batch finishes
    cancel_reason: str | None

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]


@dataclass(frozen=True)
class LiveCall:
    number: str  # masked: every digit but the last four is a bullet
    status: str  # in_queue, ringing or ongoing
    seconds: int  # in that status for this long


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # the minute's start
    started: int  # calls started (dialled) in that minute
    finished: int  # calls ended in that minute


@dataclass(frozen=True)
class ErrorCount:
    error: str
    count: int


@dataclass(frozen=True)
class HistoryItem:
    """A change of the batch's status from the audit (events), with who made it."""

    at: datetime
    from_status: str | None
    to_status: str
    reason: str | None
    actor: str | None  # events.actor: the database role, and the dashboard user when it was one


@dataclass(frozen=True)
class BatchLive:
    """Everything on the batch page that changes while it runs: read once per update and sent
    to every page open on the batch."""

    batch: BatchRow
    calls: list[LiveCall]
    minutes: list[MinuteCount]  # oldest first, one per minute of the chart, zeros included
    errors: list[ErrorCount]  # most frequent first
    finishes_at: datetime | None  # estimated from the last minutes' pace; None if unknown
    history: list[HistoryItem] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class EntryRow:
    id: UUID
    index: int  # entry_index: the lead's position in the batch (0-based)
    number: str  # masked like LiveCall.number
    lead_name: str | None
    status: str
    attempts: int
    outcome: str | None  # the last call's status
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True)
class EntriesPage:
    rows: list[EntryRow]
    status: str | None  # the filter, an entry status, or None for all
    after: int | None  # this page starts after this entry_index (None: the first page)
    next_after: int | None  # the cursor of the next page; None when this is the last


@dataclass(frozen=True)
class CampaignsPage:
    batches: list[BatchRow]
    tenants: list[tuple[UUID, str]]  # for the tenant filter: the tenants the viewer may see
    tenant: UUID | None  # the filters in force
    status: str | None
    before: tuple[datetime, UUID] | None  # keyset cursor: this page starts after it
    next_before: tuple[datetime, UUID] | None  # the next page's cursor; None when last


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: a token's name, the tenant login its queries run as (None: the
    dashboard's own database role), and the session's CSRF token for forms."""

    name: str
    role: str | None
    csrf: str

    @property
    def tenant_limited(self) -> bool:
        return self.role is not None

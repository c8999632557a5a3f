"""The dashboard's HTML: full pages, and the fragments that live updates put into them.

Live regions. Every element whose content changes while a batch runs carries an id and
``data-live-region``; its inner HTML is one partial template (templates/regions/), which the
full page includes and the fragment methods render on their own, so an update shows exactly
what a reload would. The ids, stable (the updates and the browser tests rely on them):

- campaigns page, one set per listed batch: ``row-<batch uuid>-<part>`` for each part in
  ROW_PARTS (status, progress, live, times, report), e.g. ``row-0b6f…-progress``;
- batch page: the keys of BATCH_REGIONS (``batch-status``, ``batch-counters``, ...).

Fragments go to every page open on a batch, whoever is signed in, so they hold no CSRF token:
the action buttons (region ``batch-actions``) submit forms that live outside the region
(``<button form="pause-form">``), rendered once per page with the viewer's token.

Everything shown is escaped by the templates (autoescape); nothing from the data is ever
marked safe. The charts (charts.py) are SVG built from numbers and fixed names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from jinja2 import Environment, PackageLoader, StrictUndefined

from batchctl.dashboard import charts
from batchctl.dashboard.models import (
    OUTCOMES,
    BatchLive,
    BatchRow,
    CampaignsPage,
    Counts,
    EntriesPage,
    Viewer,
)
from batchctl.statuses import BATCH_STATUSES, ENTRY_STATUSES

ROW_PARTS = ("status", "progress", "live", "times", "report")
BATCH_REGIONS = {
    "batch-status": "regions/batch_status.html",
    "batch-actions": "regions/batch_actions.html",
    "batch-counters": "regions/batch_counters.html",
    "batch-progress": "regions/batch_progress.html",
    "batch-eta": "regions/batch_eta.html",
    "batch-outcomes": "regions/batch_outcomes.html",
    "batch-minutes": "regions/batch_minutes.html",
    "batch-calls": "regions/batch_calls.html",
    "batch-errors": "regions/batch_errors.html",
    "batch-history": "regions/batch_history.html",
}
FINISHED = frozenset({"completed", "cancelled", "failed"})
# Which buttons a batch's status offers (sql/044 allows exactly these transitions).
PAUSABLE = frozenset({"running"})
RESUMABLE = frozenset({"paused"})
CANCELLABLE = frozenset({"pending", "running", "paused"})
# The batch page's counters after the total: the outcomes, the waiting ones first.
COUNTERS = ("queued", "in_progress", "completed", "declined", "failed", "cancelled")
# What the progress card says instead of an estimate (eta): why there is none, or since when
# the batch is over ("Finished 3 min ago", the time refreshed by dashboard.js).
NO_ESTIMATE = {
    "pending": "Not started yet",
    "running": "Estimating…",
    "paused": "No estimate while paused",
}
ENDED = {"completed": "Finished", "cancelled": "Cancelled", "failed": "Failed"}


def row_region_id(batch_id: UUID, part: str) -> str:
    return f"row-{batch_id}-{part}"


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def absolute(t: datetime) -> str:
    return f"{_utc(t):%Y-%m-%d %H:%M:%S} UTC"


def iso(t: datetime) -> str:
    return _utc(t).isoformat()


def relative(t: datetime, now: datetime) -> str:
    """How long ago, e.g. "4 min ago"; dashboard.js's relative() says the same words, so its
    refreshes match the server's."""
    seconds = (_utc(now) - _utc(t)).total_seconds()
    if seconds < 60:  # also a little in the future: clocks differ by a second or two
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h ago"
    days = hours // 24
    return "1 day ago" if days == 1 else f"{days} days ago"


def span(seconds: float) -> str:
    """A coming duration, roughly: "12 min", "1 h 20 min"."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"


def clock(seconds: int) -> str:
    """A call's duration: m:ss, or h:mm:ss from an hour."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def eta(live: BatchLive, now: datetime) -> str | None:
    """The estimate, e.g. "Finishes in about 12 min (≈ 14:32 UTC)"; None when there is none to
    give: the batch is not running, or has no pace yet (NO_ESTIMATE and ENDED say why)."""
    if live.batch.status != "running" or live.finishes_at is None:
        return None
    at = _utc(live.finishes_at)
    seconds = (at - _utc(now)).total_seconds()
    if seconds < 60:
        return "Finishes in under a minute"
    # The clock time rounded to the minute, like the duration, so the two agree.
    shown = (at + timedelta(seconds=30)).replace(second=0, microsecond=0)
    when = f"{shown:%H:%M}" if shown.date() == _utc(now).date() else f"{shown:%d %b %H:%M}"
    return f"Finishes in about {span(seconds)} (≈ {when} UTC)"


def hhmm(t: datetime) -> str:
    return f"{_utc(t):%H:%M}"


def label(name: str | None) -> str:
    """A status or outcome for people: "in_progress" -> "In progress"."""
    if not name:
        return ""
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def done_percent(counts: Counts) -> float:
    return 100.0 * counts.finished / counts.total if counts.total else 0.0


def number(n: int) -> str:
    return f"{n:,}"


def _query(pairs: list[tuple[str, str | None]]) -> str:
    """The query string ("?a=1&b=2") of the pairs that have a value; "" when none has."""
    kept = [(k, v) for k, v in pairs if v is not None]
    return "?" + urlencode(kept) if kept else ""


def campaigns_url(page: CampaignsPage, before: tuple[datetime, UUID] | None) -> str:
    """The campaigns page with the same filters, starting after ``before`` (None: newest)."""
    cursor = f"{before[0].isoformat()}~{before[1]}" if before else None
    tenant = str(page.tenant) if page.tenant is not None else None
    return "/" + _query([("tenant", tenant), ("status", page.status), ("before", cursor)])


def entries_url(batch_id: UUID, entries: EntriesPage, after: int | None) -> str:
    after_text = None if after is None else str(after)
    query = _query([("status", entries.status), ("after", after_text)])
    return f"/batches/{batch_id}{query}#entries"


def live_url(batch_ids: list[UUID]) -> str:
    return "/live?" + urlencode([("batch", str(b)) for b in batch_ids])


class Pages:
    """Renders the dashboard's pages and fragments (see the module's docstring for the ids)."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("batchctl.dashboard", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            absolute=absolute,
            iso=iso,
            hhmm=hhmm,
            label=label,
            num=number,
            clock=clock,
            pct=charts.percent,
        )
        self._env.globals.update(
            OUTCOMES=OUTCOMES,
            OUTCOME_LABELS=charts.OUTCOME_LABELS,
            BATCH_STATUSES=BATCH_STATUSES,
            ENTRY_STATUSES=ENTRY_STATUSES,
            FINISHED=FINISHED,
            PAUSABLE=PAUSABLE,
            RESUMABLE=RESUMABLE,
            CANCELLABLE=CANCELLABLE,
            COUNTERS=COUNTERS,
            NO_ESTIMATE=NO_ESTIMATE,
            ENDED=ENDED,
            done_percent=done_percent,
            progress_bar=charts.progress_bar,
            share_bar=charts.share_bar,
            minutes_chart=charts.minutes_chart,
            relative=relative,
            eta=eta,
            row_region_id=row_region_id,
        )

    def _render(self, template: str, **context: Any) -> str:
        return self._env.get_template(template).render(**context)

    def login(self, *, error: str | None = None) -> str:
        return self._render("login.html", error=error, viewer=None, live_url=None, now=None)

    def campaigns(self, page: CampaignsPage, viewer: Viewer, now: datetime) -> str:
        ids = [b.id for b in page.batches]
        return self._render(
            "campaigns.html",
            page=page,
            viewer=viewer,
            now=now,
            live_url=live_url(ids) if ids else None,
            older_url=campaigns_url(page, page.next_before) if page.next_before else None,
            newest_url=campaigns_url(page, None) if page.before else None,
            filtered=page.tenant is not None or page.status is not None,
        )

    def batch(
        self,
        live: BatchLive,
        entries: EntriesPage,
        viewer: Viewer,
        now: datetime,
        *,
        notice: str | None = None,
        error: str | None = None,
    ) -> str:
        batch_id = live.batch.id
        return self._render(
            "batch.html",
            live=live,
            entries=entries,
            viewer=viewer,
            now=now,
            notice=notice,
            error=error,
            live_url=f"/batches/{batch_id}/live",
            next_url=(
                entries_url(batch_id, entries, entries.next_after)
                if entries.next_after is not None
                else None
            ),
            first_url=entries_url(batch_id, entries, None) if entries.after is not None else None,
        )

    def campaign_row_fragments(self, row: BatchRow, now: datetime) -> dict[str, str]:
        return {
            row_region_id(row.id, part): self._render(f"regions/row_{part}.html", row=row, now=now)
            for part in ROW_PARTS
        }

    def batch_fragments(self, live: BatchLive, now: datetime) -> dict[str, str]:
        return {
            region: self._render(template, live=live, now=now)
            for region, template in BATCH_REGIONS.items()
        }

    def error(self, status: int, message: str, viewer: Viewer | None = None) -> str:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        return self._render(
            "error.html",
            status=status,
            title=title,
            message=message,
            viewer=viewer,
            live_url=None,
            now=None,
        )

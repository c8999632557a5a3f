"""The Summary sheet: who and what the batch was, its figures, its webhook deliveries (when it
has any), and a chart of the outcomes.

A label/value list (column A/B, rates in C) that reads top to bottom; the chart sits beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl.chart import BarChart, Reference
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from batchctl.client.summary import BatchSummary
from batchctl.report.cells import PERCENT_FORMAT, SECONDS_FORMAT, cell, formatted, heading
from batchctl.report.data import WebhookRow

NEVER_CALLED = "(never called)"
# The report is built soon after the batch finishes: its last events' deliveries may still be
# pending (the daemon retries for about a day), hence "as of the report".
WEBHOOKS_HEADING = "Webhook deliveries (as of the report)"
WEBHOOK_COLUMNS = ("Delivered", "Pending", "Failed", "Endpoint switched off")


class _Rows:
    """Appends rows and remembers the row number of the last one (the chart refers to cells)."""

    def __init__(self, ws: WriteOnlyWorksheet) -> None:
        self.ws = ws
        self.last = 0

    def add(self, *values: Any) -> None:
        self.ws.append([cell(self.ws, v) for v in values])
        self.last += 1

    def heading(self, *titles: str) -> None:
        self.ws.append([heading(self.ws, title) for title in titles])
        self.last += 1

    def counts(self, pairs: Iterable[tuple[str, int]], total: int) -> tuple[int, int]:
        """label, count, share of total; returns the first and last row written."""
        first = self.last + 1
        for label, count in pairs:
            self.add(
                label, count, formatted(self.ws, count / total, PERCENT_FORMAT) if total else None
            )
        return first, self.last


def write_summary(
    ws: WriteOnlyWorksheet, s: BatchSummary, webhooks: Sequence[WebhookRow] = ()
) -> None:
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 40
    ws.column_dimensions["C"].width = 10
    ws.column_dimensions["D"].width = 10
    rows = _Rows(ws)
    rows.heading("Batch report", "final" if s.finished else "interim: the batch is not finished")
    rows.add("Tenant", s.tenant_name)
    rows.add("Tenant id", str(s.tenant_id))
    rows.add("Batch id", str(s.batch_id))
    rows.add("Status", s.status)
    if s.cancel_reason:
        rows.add("Cancel reason", s.cancel_reason)
    rows.add("Created (UTC)", s.created_at)
    rows.add("Started (UTC)", s.started_at)
    rows.add("Finished (UTC)", s.finished_at)
    rows.add("Duration (started to finished, or to now)", s.duration)
    rows.add("Figures as of (UTC)", s.as_of)

    rows.add()
    rows.heading("Entries by final status", "Entries", "Rate")
    first, last = rows.counts(s.counts.items(), s.total)
    rows.add("Total", s.total)
    rows.add("Duplicates (not dialled)", s.duplicates)
    rows.add("Do-not-call (skipped)", s.dnc_skipped)
    _add_chart(ws, first, last)

    rows.add()
    rows.heading("Entries by last call status", "Entries", "Rate")
    outcomes = sorted(s.outcomes.items(), key=lambda kv: (-kv[1], kv[0]))
    rows.counts(((NEVER_CALLED if k == "none" else k, n) for k, n in outcomes), s.total)

    rows.add()
    rows.heading("Calls per attempt number", "Calls")
    for attempt, calls in s.attempts:
        rows.add(f"Attempt {attempt}", calls)
    rows.add("Total calls", s.calls)

    rows.add()
    rows.heading("Call duration (calls with a duration)", "Seconds")
    for label, seconds in (
        ("Median", s.median_duration_s),
        ("90th percentile", s.p90_duration_s),
        ("Total talk time", s.total_duration_s),
    ):
        rows.add(label, None if seconds is None else formatted(ws, seconds, SECONDS_FORMAT))

    if webhooks:
        rows.add()
        rows.heading(WEBHOOKS_HEADING, *WEBHOOK_COLUMNS)
        for w in webhooks:
            # Why the endpoint is off explains its failed (and its stuck pending) deliveries.
            rows.add(w.url, w.delivered, w.pending, w.failed, w.disabled_reason)

    rows.add()
    rows.heading("Options", "Value")
    if not isinstance(s.options, dict):  # undecodable (UndecodedJson): the text as it is
        rows.add("(all)", s.options)
        return
    for key, value in sorted(s.options.items()):
        rows.add(key, value)


def _add_chart(ws: WriteOnlyWorksheet, first: int, last: int) -> None:
    """A native bar chart of the entries per final status (rows first..last, columns A:B)."""
    chart = BarChart()
    chart.type = "bar"
    chart.title = "Entries by final status"
    chart.legend = None
    chart.y_axis.title = "Entries"
    chart.add_data(Reference(ws, min_col=2, min_row=first, max_row=last))
    chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=last))
    chart.width, chart.height = 16, 8
    ws.add_chart(chart, "E2")

"""The report workbook, written in openpyxl's write-only mode: rows go to temporary files as they
are appended, so memory stays flat however many entries the batch has.

Sheets: Summary (summary_sheet.py, with the batch's webhook deliveries), Calls (one row per
entry, the last call's summary, its analysis and the lead's context flattened into columns:
key_columns.py), Attempts (one row per call log), Compliance (compliance_sheet.py: policy,
rules, deferrals, opt-outs, refusals).
Blocking and CPU-bound: the daemon calls it from a worker thread, one call at a time.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from batchctl.client.summary import BatchSummary
from batchctl.report.cells import SECONDS_FORMAT, cell, formatted, heading
from batchctl.report.compliance_data import Compliance, Refusal
from batchctl.report.compliance_sheet import ComplianceSheet
from batchctl.report.data import CallRow, EntryRow, WebhookRow
from batchctl.report.key_columns import KeyColumns, unique_headers
from batchctl.report.summary_sheet import write_summary

# Beyond this many distinct keys the rest go into one JSON column: Excel has 16k columns, and
# nobody reads hundreds. (report_summary returns up to 1000 keys of each kind: these must stay
# below that.) Analysis keys are headed by the key alone, as they always were; context keys
# by "context." and the key, so that the two kinds do not mix (key_columns.unique_headers
# keeps apart what still collides, say an analysis key "context.plan").
MAX_ANALYSIS_COLUMNS = 100
OTHER_ANALYSIS = "Other analysis (JSON)"
MAX_CONTEXT_COLUMNS = 30
CONTEXT_PREFIX = "context."
# The rest of each context; the name of the column that held the whole context before.
OTHER_CONTEXT = "Context (JSON)"

# (header, width) of the fixed columns; the rows below are built in the same order.
ENTRY_COLUMNS = (
    ("Entry index", 11),
    ("Phone", 17),
    ("Lead name", 24),
    ("Lead id", 14),
    ("Final status", 12),
    ("Last call status", 15),
    ("Attempts", 9),
    # Calls the carrier refused for capacity: they used no attempt, yet the lead was dialled.
    ("Carrier refusals", 15),
    ("Duration (s)", 12),
    ("Last call ended (UTC)", 20),
    ("Caller ID", 17),
    ("Last error", 24),
    ("Consent (UTC)", 20),
    ("Consent source", 24),
    ("Summary", 48),
)
CALL_COLUMNS = (
    ("Entry index", 11),
    ("Phone", 17),
    ("Lead name", 24),
    ("Attempt", 8),
    ("Call status", 13),
    ("Caller ID", 17),
    ("Trunk", 16),
    ("Started (UTC)", 20),
    ("Answered (UTC)", 20),
    ("Ended (UTC)", 20),
    ("Duration (s)", 12),
    ("Error", 24),
    ("Summary", 48),
    ("Room", 30),
    ("Dispatch id", 20),
    ("Detail (JSON)", 48),
)
KEY_WIDTH = 18
REST_WIDTH = 40


@dataclass
class _Table:
    """A sheet with a bold, frozen header row, and how many rows follow it."""

    ws: WriteOnlyWorksheet
    columns: int
    rows: int = 0

    @classmethod
    def create(cls, book: Workbook, title: str, columns: Sequence[tuple[str, int]]) -> _Table:
        ws = book.create_sheet(title)
        # Widths and panes are written with the sheet's first row: set them before it.
        for index, (_, width) in enumerate(columns, 1):
            ws.column_dimensions[get_column_letter(index)].width = width
        ws.freeze_panes = "A2"
        ws.append([heading(ws, name) for name, _ in columns])
        return cls(ws, len(columns))

    def append(self, values: Iterable[Any]) -> None:
        self.ws.append([cell(self.ws, v) for v in values])
        self.rows += 1

    def close(self) -> None:
        self.ws.auto_filter.ref = f"A1:{get_column_letter(self.columns)}{self.rows + 1}"


class ReportWorkbook:
    def __init__(self, summary: BatchSummary, webhooks: Sequence[WebhookRow] = ()) -> None:
        self._book = Workbook(write_only=True)
        write_summary(self._book.create_sheet("Summary"), summary, webhooks)
        self._analysis = KeyColumns.of(
            summary.analysis_keys, limit=MAX_ANALYSIS_COLUMNS, prefix="", width=KEY_WIDTH,
            rest_header=OTHER_ANALYSIS, rest_width=REST_WIDTH,
        )  # fmt: skip
        # A context that may not be split needs the rest column to be shown at all (an
        # undecodable analysis is on the Attempts sheet, in its call's detail).
        self._context = KeyColumns.of(
            summary.context_keys, limit=MAX_CONTEXT_COLUMNS, prefix=CONTEXT_PREFIX,
            width=KEY_WIDTH, rest_header=OTHER_CONTEXT, rest_width=REST_WIDTH,
            rest_needed=summary.unsplit_contexts > 0,
        )  # fmt: skip
        entry_columns = [*ENTRY_COLUMNS, *self._analysis.columns, *self._context.columns]
        self._entries = _Table.create(self._book, "Calls", unique_headers(entry_columns))
        self._calls = _Table.create(self._book, "Attempts", CALL_COLUMNS)
        self._compliance: ComplianceSheet | None = None

    def add_compliance(self, compliance: Compliance) -> None:
        """The Compliance sheet (the last), all but its refused rows: add_refusals, after."""
        ws = self._book.create_sheet("Compliance")
        self._compliance = ComplianceSheet(ws, compliance)

    def add_refusals(self, rows: Sequence[Refusal]) -> None:
        assert self._compliance is not None, "add_compliance first"
        self._compliance.add_refusals(rows)

    def add_entries(self, rows: Sequence[EntryRow]) -> None:
        ws = self._entries.ws
        for r in rows:
            self._entries.append([
                r.entry_index, r.to_phone, r.lead_name, r.lead_id, r.status, r.outcome,
                r.attempts, r.carrier_refusals, _seconds(ws, r.duration_seconds),
                r.last_call_ended_at, r.caller_id, r.last_error, r.consent_at, r.consent_source,
                r.summary,
                *self._analysis.values(r.analysis), *self._context.values(r.context),
            ])  # fmt: skip

    def add_calls(self, rows: Sequence[CallRow]) -> None:
        ws = self._calls.ws
        for r in rows:
            self._calls.append([
                r.entry_index, r.to_phone, r.lead_name, r.attempt, r.status, r.caller_id,
                r.trunk, r.started_at, r.answered_at, r.ended_at,
                _seconds(ws, r.duration_seconds), r.error, r.summary, r.room_name,
                r.dispatch_id, r.detail or None,
            ])  # fmt: skip

    def to_bytes(self) -> bytes:
        """The .xlsx file. Nothing can be added after this."""
        self._entries.close()
        self._calls.close()
        out = io.BytesIO()
        self._book.save(out)
        return out.getvalue()

    def discard(self) -> None:
        """Drops a workbook that will not be saved: openpyxl deletes a write-only sheet's
        temporary file on save, or else only when the process exits (a daemon runs for weeks)."""
        for ws in self._book.worksheets:
            with contextlib.suppress(Exception):  # best effort: the build failed already
                if not ws.closed:
                    ws.close()
                ws._writer.cleanup()


def _seconds(ws: WriteOnlyWorksheet, value: Any) -> Any:
    return None if value is None else formatted(ws, value, SECONDS_FORMAT)

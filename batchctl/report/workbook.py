"""The report workbook, written in openpyxl's write-only mode: rows go to temporary files as they
are appended, so memory stays flat however many entries the batch has.

Sheets: Summary (summary_sheet.py), Calls (one row per entry, the last call's summary and
analysis flattened into columns), Attempts (one row per call log). Blocking and CPU-bound: the
daemon calls it from a worker thread, one call at a time.
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

from batchctl.report.cells import SECONDS_FORMAT, cell, formatted, heading
from batchctl.report.data import BatchSummary, CallRow, EntryRow
from batchctl.report.summary_sheet import write_summary

# Beyond this many distinct analysis keys the rest go into one JSON column: Excel has 16k
# columns, and nobody reads hundreds.
MAX_ANALYSIS_COLUMNS = 100
OTHER_ANALYSIS = "Other analysis (JSON)"

# (header, width) of the fixed columns; the rows below are built in the same order.
ENTRY_COLUMNS = (
    ("Entry index", 11),
    ("Phone", 17),
    ("Lead name", 24),
    ("Lead id", 14),
    ("Final status", 12),
    ("Last call status", 15),
    ("Attempts", 9),
    ("Duration (s)", 12),
    ("Last call ended (UTC)", 20),
    ("Last error", 24),
    ("Summary", 48),
)
CONTEXT_COLUMN = ("Context (JSON)", 40)
CALL_COLUMNS = (
    ("Entry index", 11),
    ("Phone", 17),
    ("Lead name", 24),
    ("Attempt", 8),
    ("Call status", 13),
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
ANALYSIS_WIDTH = 18


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
    def __init__(self, summary: BatchSummary) -> None:
        self._book = Workbook(write_only=True)
        write_summary(self._book.create_sheet("Summary"), summary)
        self._keys = summary.analysis_keys[:MAX_ANALYSIS_COLUMNS]
        self._more_keys = len(summary.analysis_keys) > MAX_ANALYSIS_COLUMNS
        entry_columns = [*ENTRY_COLUMNS, *((k, ANALYSIS_WIDTH) for k in self._keys)]
        if self._more_keys:
            entry_columns.append((OTHER_ANALYSIS, 40))
        entry_columns.append(CONTEXT_COLUMN)
        self._entries = _Table.create(self._book, "Calls", entry_columns)
        self._calls = _Table.create(self._book, "Attempts", CALL_COLUMNS)

    def add_entries(self, rows: Sequence[EntryRow]) -> None:
        ws = self._entries.ws
        for r in rows:
            # Undecodable analysis: its columns stay empty; the Attempts sheet has it as text.
            analysis = r.analysis if isinstance(r.analysis, dict) else {}
            values: list[Any] = [
                r.entry_index, r.to_phone, r.lead_name, r.lead_id, r.status, r.outcome,
                r.attempts, _seconds(ws, r.duration_seconds), r.last_call_ended_at,
                r.last_error, r.summary,
                *(analysis.get(k) for k in self._keys),
            ]  # fmt: skip
            if self._more_keys:
                values.append({k: v for k, v in analysis.items() if k not in self._keys} or None)
            values.append(r.context or None)
            self._entries.append(values)

    def add_calls(self, rows: Sequence[CallRow]) -> None:
        ws = self._calls.ws
        for r in rows:
            self._calls.append([
                r.entry_index, r.to_phone, r.lead_name, r.attempt, r.status, r.started_at,
                r.answered_at, r.ended_at, _seconds(ws, r.duration_seconds), r.error, r.summary,
                r.room_name, r.dispatch_id, r.detail or None,
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

"""Turning database values into safe cells of a write-only worksheet.

Lead names, context and the agent's analysis are data from outside: a string is always a text
cell, never a formula or an error value, whatever it starts with, and the ones a spreadsheet
would read as a formula or an error when typed (= + - @, tab, CR; #N/A ...) also carry Excel's
quote prefix, so that editing the cell keeps it text. The value itself is kept as it is (no
apostrophe added).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
SECONDS_FORMAT = "0.0"
PERCENT_FORMAT = "0.0%"
DURATION_FORMAT = "[h]:mm:ss"
BOLD = Font(bold=True)
# Excel's limit of characters in a cell: it reports a workbook with a longer one as damaged.
# A 64 KiB context's JSON, or an undecodable value's text, is longer.
MAX_CELL_CHARS = 32767
# Excel keeps 15 significant digits: a longer whole number (an id in a lead's context, say)
# would silently change, so it is written as its text instead.
MAX_EXACT_INT = 10**15 - 1


def text(ws: WriteOnlyWorksheet, value: str) -> str | Cell:
    """A text cell for ``value``. Control characters XML cannot hold become U+FFFD rather than
    failing the whole report; text longer than a cell holds is cut, ending in an ellipsis."""
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if len(value) > MAX_CELL_CHARS:
        value = value[: MAX_CELL_CHARS - 1] + "\u2026"
    if not value.startswith(FORMULA_PREFIXES) and value not in ERROR_CODES:
        return value  # openpyxl stores any other string as text
    result = WriteOnlyCell(ws, value)
    result.data_type = "s"  # openpyxl took "=..." for a formula and "#N/A" for an error
    result.quotePrefix = True
    return result


def formatted(ws: WriteOnlyWorksheet, value: Any, number_format: str) -> Cell:
    result = WriteOnlyCell(ws, float(value) if isinstance(value, Decimal) else value)
    result.number_format = number_format
    return result


def heading(ws: WriteOnlyWorksheet, title: str) -> Cell:
    """A bold text cell (a header may come from data too: the agent's analysis keys)."""
    result = text(ws, title)
    if isinstance(result, str):
        result = WriteOnlyCell(ws, result)
    result.font = BOLD
    return result


def naive_utc(value: datetime) -> datetime:
    """Excel has no time zones: every time in the workbook is UTC, and its header says so."""
    return value.astimezone(UTC).replace(tzinfo=None)


def cell(ws: WriteOnlyWorksheet, value: Any) -> Any:
    """A cell value for anything the report reads: numbers stay numbers (but for whole numbers
    Excel cannot hold exactly, and infinity: their text), times become UTC datetimes, JSON
    objects and arrays their JSON text, everything else safe text."""
    match value:
        case None | bool() | Cell():
            return value
        case int() if abs(value) <= MAX_EXACT_INT:
            return value
        case float() if math.isfinite(value):
            return value
        case int() | float():
            return text(ws, str(value))
        case Decimal():
            return float(value)
        case str():
            return text(ws, value)
        case datetime():
            return formatted(ws, naive_utc(value), DATETIME_FORMAT)
        case timedelta():
            return formatted(ws, value, DURATION_FORMAT)
        case dict() | list():
            return text(ws, json.dumps(value, ensure_ascii=False, sort_keys=True))
        case _:
            return text(ws, str(value))

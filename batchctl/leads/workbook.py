"""The rows of an Excel workbook (.xlsx), read with openpyxl in read-only mode (a row at a time,
whatever the size of the sheet), each cell as the text a person sees in it: a phone number
typed as 4155550123 is a number to Excel, and must come out as "4155550123", never
"4155550123.0" or "4.15555E+09"."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.styles.numbers import is_datetime
from openpyxl.utils.exceptions import InvalidFileException

from batchctl.leads.csvfile import CsvFileError

# What a damaged or foreign file can make openpyxl raise (ElementTree's ParseError is a
# SyntaxError).
UNREADABLE = (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, SyntaxError, ValueError)

# A number format of zeros only ("00000"): the number is shown zero-padded to that width, as
# ids and postal codes are.
ZERO_PADDED = re.compile(r"0+")


def open_workbook(path: Path) -> Any:
    """The workbook, read-only, with formulas' last computed values."""
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except UNREADABLE as exc:
        raise CsvFileError(
            f"not an Excel workbook openpyxl can read ({type(exc).__name__}: {exc}): "
            'save it from the spreadsheet as .xlsx or as "CSV UTF-8"'
        ) from None


def worksheet(workbook: Any, name: str | None) -> Any:
    """The sheet called ``name`` (in any case), or the first one."""
    sheets = workbook.worksheets  # chart sheets left out
    if not sheets:
        raise CsvFileError("the workbook has no worksheet")
    if name is None:
        return sheets[0]
    for sheet in sheets:
        if sheet.title.casefold() == name.casefold():
            return sheet
    names = ", ".join(f'"{sheet.title}"' for sheet in sheets)
    raise CsvFileError(f'no sheet "{name}" in the workbook (it has {names}): check --sheet')


def sheet_rows(sheet: Any) -> Iterator[tuple[int, list[str]]]:
    """(row number, its cells as text), every row from the first, blank ones included; a row
    ends with its last value."""
    # A sheet's recorded size may be wrong (some programs write "A1"); rows past it would be
    # lost without a word.
    sheet.reset_dimensions()
    try:
        for number, cells in enumerate(sheet.iter_rows(min_row=1, min_col=1), start=1):
            values = [cell_text(cell) for cell in cells]
            while values and not values[-1]:
                values.pop()
            yield number, values
    except UNREADABLE as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise CsvFileError(f'sheet "{sheet.title}" cannot be read ({problem})') from None


def cell_text(cell: Any) -> str:
    """The cell's value as text: whole numbers as their digits (zero-padded when the cell's
    format is "000..."), other numbers without an exponent, dates and times in ISO 8601, TRUE
    and FALSE as Excel shows them."""
    value = cell.value
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        digits = str(value)
        number_format = cell.number_format
        if ZERO_PADDED.fullmatch(number_format):
            return digits.zfill(len(number_format) + (value < 0))
        return digits
    if isinstance(value, float):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return _datetime(value, cell.number_format)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)  # a duration ([h]:mm), as H:MM:SS


def _decimal(value: float) -> str:
    """``value`` to Excel's 15 significant digits (0.1 + 0.2 is "0.3"), without an exponent."""
    rounded = float(f"{value:.15g}")
    if rounded.is_integer():
        return str(int(rounded))
    return format(Decimal(repr(rounded)), "f")


def _datetime(value: dt.datetime, number_format: str) -> str:
    """A date as 2024-03-01, a time as 09:30:00, both as 2024-03-01T09:30:00, as the cell's
    format shows it (a format that is not a date's: a date when the time is midnight)."""
    kind = is_datetime(number_format)
    if kind is None:
        kind = "date" if value.time() == dt.time() else "datetime"
    if kind == "date":
        return value.date().isoformat()
    if kind == "time":
        return value.time().isoformat()
    return value.isoformat()

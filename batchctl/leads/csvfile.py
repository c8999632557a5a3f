"""Reading lead CSV files: one record at a time (files of any size stream), each with the line
it starts on, so every problem can be reported as "line N, column C"."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass


class CsvFileError(ValueError):
    """The file as a whole cannot be read (no header, no phone column, not UTF-8, ...)."""


@dataclass(frozen=True)
class Problem:
    """One bad row: nothing is created because of it unless bad rows are skipped."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Record:
    line: int
    values: dict[str, str]  # column name -> stripped cell


def read_records(
    lines: Iterable[str], known: Collection[str], required: str
) -> Iterator[Record | Problem]:
    """The data rows of a CSV file with a ``required`` column. Header names are stripped; the
    ``known`` ones (lower-case) match in any case, the others keep theirs. Blank rows are
    skipped; a row with the wrong number of fields is a Problem."""
    reader = csv.reader(lines, strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise CsvFileError("the file is empty; the first line must name the columns")
        _check_header(header, required)
        header = [name.lower() if name.lower() in known else name for name in header]
        start = reader.line_num + 1
        for fields in reader:
            if any(field.strip() for field in fields):
                if len(fields) != len(header):
                    yield Problem(
                        start, None, f"{len(fields)} fields, but the header has {len(header)}"
                    )
                else:
                    yield Record(start, {n: f.strip() for n, f in zip(header, fields, strict=True)})
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvFileError(f"line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _check_header(header: list[str], required: str) -> None:
    lowered = [name.lower() for name in header]
    for position, name in enumerate(lowered, start=1):
        if not name:
            raise CsvFileError(f"line 1: column {position} has no name; every column needs one")
        if lowered.count(name) > 1:
            raise CsvFileError(f'line 1: column "{header[position - 1]}" appears twice')
    if required not in lowered:
        found = ", ".join(header)
        raise CsvFileError(f'line 1: no "{required}" column (the header has: {found})')

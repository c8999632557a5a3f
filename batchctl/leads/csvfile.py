"""The records of a lead file: one at a time (files of any size stream), each with the line it
starts on (a workbook's row), so every problem can be reported as "line N, column C".

The rows come from CSV text (read_records) or from a workbook (batchctl.leads.workbook); the
header and its rules are the same for both (table_records). batchctl.leads.files opens a file
of either kind."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any


class CsvFileError(ValueError):
    """The file as a whole cannot be read (no header, no phone column, not UTF-8, ...)."""


class UndecodableText(CsvFileError):
    """The text is not in the encoding it is read in (batchctl.leads.files finds the line)."""

    def __init__(self, exc: UnicodeDecodeError) -> None:
        name = "UTF-8" if exc.encoding.replace("_", "-").lower() == "utf-8" else exc.encoding
        super().__init__(f"not {name} text ({exc.reason})")
        self.encoding = exc.encoding


@dataclass(frozen=True)
class Problem:
    """One bad row: nothing is created because of it unless bad rows are skipped."""

    line: int
    column: str | None
    message: str
    # The row's phone cell as written, when it has one: what an intake refusal records
    # (batchctl.leads.staging). Not part of what the problem is.
    to_phone: str | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"

    @property
    def detail(self) -> str:
        """The problem without its line ("column phone: ..."), as an intake refusal says it."""
        return f"column {self.column}: {self.message}" if self.column else self.message


@dataclass(frozen=True)
class Record:
    line: int
    values: dict[str, str]  # column name -> stripped cell


def column_letter(position: int) -> str:
    """A spreadsheet's name of the column at ``position`` (1 -> A, 27 -> AA)."""
    letters = ""
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


class Where:
    """How a file names its places: "line 3" and "column 2" in a text file, 'sheet "Leads",
    row 3' and "column B" in a workbook. It learns the header's columns as the records are read,
    so that a workbook's problems show the column's letter beside its name."""

    def __init__(self, sheet: str | None = None) -> None:
        self.sheet = sheet
        self.positions: dict[str, int] = {}  # column name -> position (from 1)

    def row(self, line: int) -> str:
        return f"line {line}" if self.sheet is None else f'sheet "{self.sheet}", row {line}'

    def column(self, position: int) -> str:
        return f"column {position if self.sheet is None else column_letter(position)}"

    def problem(self, problem: Problem) -> str:
        """``problem`` as one line ("line 4, column phone: ...")."""
        if self.sheet is None:
            return str(problem)
        where = self.row(problem.line)
        position = self.positions.get(problem.column or "")
        if position:
            where += f", column {column_letter(position)} ({problem.column})"
        elif problem.column:
            where += f", column {problem.column}"
        return f"{where}: {problem.message}"


def read_records(
    lines: Iterable[str],
    known: Collection[str],
    required: str,
    *,
    delimiter: str = ",",
    first_line: int = 1,
    where: Where | None = None,
) -> Iterator[Record | Problem]:
    """The records of CSV text (``lines``, the header first, which is line ``first_line`` of
    the file); see table_records."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    rows = _csv_rows(reader, first_line - 1)
    return table_records(rows, known, required, Where() if where is None else where)


def _csv_rows(reader: Any, skipped: int) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its fields)."""
    start = 1 + skipped
    try:
        for fields in reader:
            yield start, fields
            start = reader.line_num + 1 + skipped
    except csv.Error as exc:
        raise CsvFileError(f"line {reader.line_num + skipped}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UndecodableText(exc) from None


def table_records(
    rows: Iterable[tuple[int, Sequence[str]]],
    known: Collection[str],
    required: str,
    where: Where,
    *,
    ragged: bool = False,
) -> Iterator[Record | Problem]:
    """The data rows of a table with a ``required`` column; ``rows`` are (line, cells), the
    header first. Header names are stripped; the ``known`` ones (lower-case) match in any case,
    the others keep theirs. Columns without a name at the end of the header are left out (a
    spreadsheet writes them for cells once formatted), but a value under one is a Problem.
    Blank rows are skipped. A CSV row must have as many fields as the header, else it is a
    Problem; a workbook's rows (``ragged``) end where their last value does."""
    rows = iter(rows)
    line, header = next(rows, (0, ()))
    names = [name.strip() for name in header]
    while names and not names[-1]:
        names.pop()
    if not names:
        first = "line" if where.sheet is None else "row"
        if not line:
            empty = "the file" if where.sheet is None else f'sheet "{where.sheet}"'
            raise CsvFileError(f"{empty} is empty; the first {first} must name the columns")
        raise CsvFileError(f"{where.row(line)} is blank; the first {first} must name the columns")
    _check_header(names, required, where, line)
    names = [name.lower() if name.lower() in known else name for name in names]
    where.positions = {name: position for position, name in enumerate(names, start=1)}
    width, named = len(header), len(names)
    phone_at = [name.lower() for name in names].index(required)
    for line, fields in rows:
        if any(field.strip() for field in fields):
            # (The cell under the required column, as far as a malformed row can tell.)
            phone = fields[phone_at].strip() if phone_at < len(fields) else None
            if len(fields) != width and not ragged:
                message = f"{len(fields)} fields, but the header has {width}"
                yield Problem(line, None, message, to_phone=phone)
            elif len(fields) > named and any(field.strip() for field in fields[named:]):
                position = next(i for i in range(named, len(fields)) if fields[i].strip()) + 1
                message = f"a value in {where.column(position)}, which has no name in the header"
                yield Problem(line, None, message, to_phone=phone)
            else:
                if len(fields) < named:  # a workbook's row that ends early
                    fields = [*fields, *[""] * (named - len(fields))]
                yield Record(line, {n: f.strip() for n, f in zip(names, fields, strict=False)})


def _check_header(names: list[str], required: str, where: Where, line: int) -> None:
    lowered = [name.lower() for name in names]
    for position, name in enumerate(lowered, start=1):
        if not name:
            column = where.column(position)
            raise CsvFileError(f"{where.row(line)}: {column} has no name; every column needs one")
        if lowered.count(name) > 1:
            raise CsvFileError(f'{where.row(line)}: column "{names[position - 1]}" appears twice')
    if required not in lowered:
        found = ", ".join(names)
        raise CsvFileError(f'{where.row(line)}: no "{required}" column (the header has: {found})')

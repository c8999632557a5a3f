"""A lead file as people have one, opened for its records: CSV text or an Excel workbook.

What is detected, because it can be told for certain:

- the kind, from the file's first bytes: a workbook (.xlsx) is a ZIP archive; an Excel
  97-2003 workbook (.xls, or a password-protected .xlsx) is refused with what to do instead;
- a byte-order mark: UTF-8 (Excel's "CSV UTF-8"), UTF-16 (Excel's "Unicode Text") or UTF-32;
- the delimiter, from the header line: of comma, semicolon, tab and pipe, the one that splits
  the header so that it has the required column (Excel writes semicolons where the decimal
  separator is a comma); or a first line such as "sep=;".

What is not: any other encoding. Text without a byte-order mark is read as UTF-8, and text
that is not UTF-8 is refused, naming the line and --encoding. A Windows-1252 file (older
Excel's "CSV") would decode as Latin-1, MacRoman or CP850 as well, to different names
(MacRoman's "é" is Windows-1252's "Ž"); a wrong guess would store misspelt names in every
batch without a word, so the person who knows says which (``encoding``). The refusal shows
the first bad byte as Windows-1252 would read it, to help them decide.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Iterator
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from batchctl.leads.csvfile import (
    CsvFileError,
    Problem,
    Record,
    UndecodableText,
    Where,
    read_records,
    table_records,
)

# The delimiters a lead file may use, by the names --delimiter takes.
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "\\t": "\t", "|": "|"}
DELIMITER_NAMES = {",": '","', ";": '";"', "\t": "tab", "|": '"|"'}

ZIP = b"PK\x03\x04"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and .xlsx encrypted with a password
BOMS = (  # longest first: UTF-32's little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n?")  # Excel's hint: the delimiter, on a line of its own
# Encodings whose line ends are the bytes of ASCII: a bad byte can be found line by line.
ASCII_BASED = re.compile(r"utf[-_]?8(-sig)?|cp\d+|windows-\d+|latin.*|iso8859.*|ascii|mac.*")


def check_encoding(name: str) -> str:
    """``name`` if Python can decode text in it, else ValueError."""
    try:
        io.TextIOWrapper(io.BytesIO(), encoding=name)  # refuses binary codecs such as base64
    except LookupError:
        raise ValueError(
            f'unknown encoding "{name}" (a text encoding such as cp1252, latin-1 or utf-16)'
        ) from None
    return name


def check_delimiter(name: str) -> str:
    """The delimiter ``name`` stands for (",", ";", "tab" or a tab, "|"), else ValueError."""
    if name.lower() not in DELIMITERS:
        raise ValueError(f'expected one of , ; tab |, got "{name}"')
    return DELIMITERS[name.lower()]


class LeadFile:
    """An opened lead file: ``records`` reads it, ``describe`` names a problem's place in it.
    Errors about the file as a whole are CsvFileError."""

    def __init__(
        self,
        path: Path,
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        sheet: str | None = None,
    ) -> None:
        self.path = path
        self.where = Where()
        self._delimiter = delimiter
        self._stream: IO[str] | None = None
        self._workbook: Any = None
        try:
            with path.open("rb") as raw:
                head = raw.read(len(OLE2))
        except OSError as exc:
            raise CsvFileError(f"cannot be read ({exc.strerror})") from None
        if head.startswith(OLE2):
            raise CsvFileError(
                "an Excel 97-2003 workbook (.xls) or a workbook with a password, which cannot "
                'be read: save it from Excel as .xlsx without a password, or as "CSV UTF-8"'
            )
        if head.startswith(ZIP):
            for option, value in (("--encoding", encoding), ("--delimiter", delimiter)):
                if value is not None:
                    raise CsvFileError(f"a workbook has no {option[2:]}: leave out {option}")
            from batchctl.leads.workbook import open_workbook, worksheet  # openpyxl is big

            self._workbook = open_workbook(path)
            try:
                self._sheet = worksheet(self._workbook, sheet)
            except CsvFileError:
                self.close()
                raise
            self.where = Where(self._sheet.title)
            return
        if sheet is not None:
            raise CsvFileError("a CSV file has no sheets: leave out --sheet")
        self.encoding = _text_encoding(head, encoding)
        self._stream = path.open(newline="", encoding=self.encoding)

    def records(self, known: Collection[str], required: str) -> Iterator[Record | Problem]:
        """The data rows, as batchctl.leads.csvfile.table_records gives them."""
        if self._stream is None:
            from batchctl.leads.workbook import sheet_rows

            return table_records(sheet_rows(self._sheet), known, required, self.where, ragged=True)
        return self._text_records(known, required)

    def _text_records(self, known: Collection[str], required: str) -> Iterator[Record | Problem]:
        assert self._stream is not None
        try:
            first = self._stream.readline()
            delimiter, skipped = self._delimiter, 0
            hint = SEP_LINE.fullmatch(first)
            if hint:
                delimiter, skipped = delimiter or hint[1], 1
                first = self._stream.readline()
            if delimiter is None:
                delimiter = detect_delimiter(first, required, self.where.row(1 + skipped))
            lines = chain((first,), self._stream) if first else iter(())
            yield from read_records(
                lines,
                known,
                required,
                delimiter=delimiter,
                first_line=1 + skipped,
                where=self.where,
            )
        except (UnicodeDecodeError, UndecodableText):
            raise CsvFileError(undecodable(self.path, self.encoding)) from None

    def describe(self, problem: Problem) -> str:
        """Where ``problem`` is, and what it is ("line 4, column phone: ...")."""
        return self.where.problem(problem)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._workbook is not None:
            self._workbook.close()

    def __enter__(self) -> LeadFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _text_encoding(head: bytes, given: str | None) -> str:
    """The encoding to read text in: its byte-order mark's, else ``given``, else UTF-8."""
    for bom, marked in BOMS:
        if head.startswith(bom):
            if given is None or _family(given) == _family(marked):
                return marked
            name = _family(marked).upper()
            raise CsvFileError(
                f"the file begins with a {name} byte-order mark, so it is {name} text, "
                f"not {given}: leave out --encoding"
            )
    return given or "utf-8"


def _family(encoding: str) -> str:
    """utf-8 for utf-8-sig, utf-16 for utf-16-le, ..."""
    return "-".join(codecs.lookup(encoding).name.split("-")[:2])


def detect_delimiter(header: str, required: str, where: str) -> str:
    """The delimiter of the file whose ``header`` line this is: the only candidate in it, or
    else the only one that splits off a ``required`` column. A comma when there is none (a
    file of one column)."""
    present = [d for d in DELIMITER_NAMES if d in header]
    if len(present) < 2:
        return present[0] if present else ","
    fits = [d for d in present if required in _header_names(header, d)]
    if len(fits) == 1:
        return fits[0]
    names = " or ".join(DELIMITER_NAMES[d] for d in fits or present)
    neither = "" if fits else f' (neither gives a "{required}" column)'
    raise CsvFileError(
        f"{where}: cannot tell whether {names} separates the columns{neither}: "
        "say which with --delimiter"
    )


def _header_names(header: str, delimiter: str) -> list[str]:
    fields = next(csv.reader([header], delimiter=delimiter), [])
    return [name.strip().lower() for name in fields]


def undecodable(path: Path, encoding: str) -> str:
    """Why the file cannot be read in ``encoding``: the first line with a bad byte, and the
    --encoding that would read it."""
    name = codecs.lookup(encoding).name
    utf8 = name.startswith("utf-8")
    shown = "UTF-8" if utf8 else encoding
    found = None
    if ASCII_BASED.fullmatch(name):
        found = _first_bad_line(path, "utf-8" if utf8 else encoding)
    if found is None:
        return f"not {shown} text: name the file's encoding with --encoding"
    line, raw, exc = found
    byte = raw[exc.start]
    before = raw[: exc.start].decode(encoding, errors="replace")[-24:].lstrip()
    place = f'after "{before}"' if before else "at the start of the line"
    message = f"line {line} is not {shown} text: byte 0x{byte:02X} {place}"
    if not utf8:
        return f"{message}: name the file's own encoding with --encoding"
    try:
        char = bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return f"{message}: name the file's encoding with --encoding"
    return (
        f'{message} ("{char}" in Windows-1252, which older Excel saves CSV files in): '
        'pass --encoding cp1252, or save the file as "CSV UTF-8"'
    )


def _first_bad_line(path: Path, encoding: str) -> tuple[int, bytes, UnicodeDecodeError] | None:
    # Latin-1 maps every byte to one character, and newline="" ends lines where the csv
    # reader does (\n, \r\n, \r), so the line numbers are the CSV's.
    with path.open(encoding="latin-1", newline="") as text:
        for number, line in enumerate(text, start=1):
            raw = line.encode("latin-1")
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return number, raw, exc
    return None


def open_lead_file(
    path: Path | str,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> LeadFile:
    """``path`` opened for reading (use it in a with statement)."""
    return LeadFile(Path(path), encoding=encoding, delimiter=delimiter, sheet=sheet)

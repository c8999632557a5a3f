"""A JSON object of each entry (its last call's analysis, its lead's context) as columns of the
Calls sheet, so that a manager can filter by them in Excel. One mechanism for both kinds.

The keys come from the batch's summary (report_summary, read before any row: a write-only sheet
is written top to bottom), most used first, then by name. The first ``limit`` of them get a
column each; when the batch has more, one last column holds the rest of each entry's object as
JSON. That column also holds, whole, a value the report could not split: one Python could not
decode (stored before the intake bounds), which comes as its text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A header's most characters: a key is data of any length (a header of thousands of characters
# helps no one), cut to fit, ending in an ellipsis.
MAX_HEADER_CHARS = 60
EMPTY_KEY = "(empty)"
# Control characters (line breaks too): a header is one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class KeyColumns:
    keys: tuple[str, ...]  # the keys that have a column, in column order
    columns: tuple[tuple[str, int], ...]  # (header, width) of those columns, then of the rest's
    rest: bool  # whether the last column holds the rest
    _shown: frozenset[str] = field(repr=False)

    @classmethod
    def of(
        cls,
        keys: Sequence[str],
        *,
        limit: int,
        prefix: str,
        width: int,
        rest_header: str,
        rest_width: int,
        rest_needed: bool = False,
    ) -> KeyColumns:
        """Columns for the first ``limit`` of ``keys``, headed ``prefix`` + key, and the rest
        column when there are more keys or ``rest_needed`` (some value may not be split)."""
        shown = tuple(keys[:limit])
        rest = len(keys) > limit or rest_needed
        columns = [(key_header(prefix, key), width) for key in shown]
        if rest:
            columns.append((rest_header, rest_width))
        return cls(shown, tuple(columns), rest, frozenset(shown))

    def values(self, value: Any) -> list[Any]:
        """An entry's cells in these columns: the value of each key (None: it has not got the
        key), then the rest as an object (None: nothing is left). A value that is not an object
        (None, or the text of one Python could not decode) has empty key columns; the rest
        column shows it whole."""
        if isinstance(value, dict):
            cells = [value.get(key) for key in self.keys]
            if self.rest:
                cells.append({k: v for k, v in value.items() if k not in self._shown} or None)
            return cells
        return [None] * len(self.keys) + ([value] if self.rest else [])


def key_header(prefix: str, key: str) -> str:
    """A key's column header: ``prefix`` + key, on one line (control characters become U+FFFD),
    at most MAX_HEADER_CHARS. Safe as a cell still needs cells.heading (a key may look like a
    formula)."""
    name = _CONTROL.sub("\ufffd", key) if key else EMPTY_KEY
    room = MAX_HEADER_CHARS - len(prefix)
    if len(name) > room:
        name = name[: room - 1] + "\u2026"
    return prefix + name


def unique_headers(columns: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The columns with distinct headers, ignoring case (as Excel's lookups do): a header equal
    to an earlier one gets " (2)", " (3)" ... So a key never takes a fixed column's name, and
    two keys cut to the same header stay apart."""
    seen: set[str] = set()
    result = []
    for header, width in columns:
        unique, n = header, 1
        while unique.casefold() in seen:
            n += 1
            unique = f"{header} ({n})"
        seen.add(unique.casefold())
        result.append((unique, width))
    return result

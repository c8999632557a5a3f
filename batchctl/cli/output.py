"""How every command prints: aligned tables and key/value blocks for people, JSON for scripts
(``--json``). Values are formatted in one place, so all commands agree on how a time, a
duration or a missing value looks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import click

F = TypeVar("F", bound=Callable[..., Any])

MISSING = "-"


def json_option(command: F) -> F:
    """The ``--json`` flag, passed to the command as ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text."
    )(command)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def to_json(doc: Any, *, indent: int | None = 2) -> str:
    return json.dumps(doc, indent=indent, default=_json_default)


def print_json(doc: Any) -> None:
    click.echo(to_json(doc))


def format_duration(delta: timedelta) -> str:
    """3723 s -> "1h 02m 03s"; days are counted in hours (a campaign rarely runs for days)."""
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def format_value(value: Any) -> str:
    """A cell for people: times in UTC to the second, durations as 1h 02m 03s, None as "-"."""
    if value is None:
        return MISSING
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    empty: str = "(none)",
) -> None:
    """``columns``: (key in each row, header). Numbers are right-aligned."""
    rows = list(rows)
    if not rows:
        click.echo(empty)
        return
    cells = [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [
        max(len(header), *(len(line[i]) for line in cells)) for i, (_, header) in enumerate(columns)
    ]
    numeric = [all(_is_number(row.get(key)) for row in rows) for key, _ in columns]

    def line(values: Sequence[str]) -> str:
        parts = (
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        )
        return "  ".join(parts).rstrip()

    click.echo(line([header for _, header in columns]))
    for values in cells:
        click.echo(line(values))


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """A block of "label  value" lines, labels aligned."""
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        click.echo(f"{label:<{width}}  {format_value(value)}")

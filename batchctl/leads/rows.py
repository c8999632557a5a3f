"""CSV records -> leads (for batches) and numbers (for the do-not-call list).

A lead file has a ``phone`` column and optionally ``name``, ``lead_id`` and ``timezone``; every
other column goes into the lead's context (empty cells are left out)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from batchctl.leads.csvfile import Problem, Record, read_records
from batchctl.leads.phones import Phone, PhoneError, parse_phone

PHONE = "phone"
LEAD_COLUMNS = (PHONE, "name", "lead_id", "timezone")


@dataclass(frozen=True)
class Lead:
    line: int
    to_phone: str
    lead_name: str | None
    lead_id: str | None
    context: dict[str, str]
    timezone: str | None  # the row's own, checked by the database
    number_timezone: str | None  # the number's, used when the row names none

    def copy_row(self) -> tuple[int, str, str | None, str | None, str, str | None, str | None]:
        """The row as staged for the database (see batchctl.leads.staging)."""
        return (
            self.line,
            self.to_phone,
            self.lead_name,
            self.lead_id,
            json.dumps(self.context),
            self.timezone,
            self.number_timezone,
        )


@dataclass(frozen=True)
class Number:
    line: int
    phone: str


def _phone(record: Record, default_region: str | None) -> Phone | Problem:
    raw = record.values[PHONE]
    if not raw:
        return Problem(record.line, PHONE, "missing (every row needs a number)")
    try:
        return parse_phone(raw, default_region)
    except PhoneError as exc:
        return Problem(record.line, PHONE, str(exc))


def read_leads(lines: Iterable[str], default_region: str | None) -> Iterator[Lead | Problem]:
    for record in read_records(lines, LEAD_COLUMNS, PHONE):
        if isinstance(record, Problem):
            yield record
            continue
        phone = _phone(record, default_region)
        if isinstance(phone, Problem):
            yield phone
            continue
        cells = record.values
        yield Lead(
            line=record.line,
            to_phone=phone.e164,
            lead_name=cells.get("name") or None,
            lead_id=cells.get("lead_id") or None,
            context={k: v for k, v in cells.items() if v and k not in LEAD_COLUMNS},
            timezone=cells.get("timezone") or None,
            number_timezone=phone.timezone,
        )


def read_numbers(lines: Iterable[str], default_region: str | None) -> Iterator[Number | Problem]:
    """The ``phone`` column of a file, normalised; other columns are ignored."""
    for record in read_records(lines, (PHONE,), PHONE):
        phone = record if isinstance(record, Problem) else _phone(record, default_region)
        if isinstance(phone, Problem):
            yield phone
        else:
            yield Number(record.line, phone.e164)

"""A lead file's records -> leads (for batches) and numbers (for the do-not-call list).

A lead file has a ``phone`` column and optionally ``name``, ``lead_id``, ``timezone``,
``region`` (the lead's ISO 3166-2 subdivision, e.g. US-FL: its calling-hours rules apply, see
docs/compliance.md), ``consent_at`` and ``consent_source`` (the lead's consent evidence: when,
as an ISO 8601 date-time with its UTC offset, and where from); every other column goes into the
lead's context (empty cells are left out)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

from batchctl.leads.csvfile import Problem, Record, read_records
from batchctl.leads.files import LeadFile
from batchctl.leads.parallel import map_in_chunks
from batchctl.leads.phones import Phone, PhoneError, parse_phone

PHONE = "phone"
REGION = "region"
CONSENT_AT = "consent_at"
CONSENT_SOURCE = "consent_source"
LEAD_COLUMNS = (PHONE, "name", "lead_id", "timezone", REGION, CONSENT_AT, CONSENT_SOURCE)
# The form batchctl.region_problem (sql/025) accepts, checked here too so that a bad region is
# reported by its line; the database checks it again.
_REGION_FORM = re.compile(r"[A-Za-z]{2}-[A-Za-z0-9]{1,3}")


@dataclass(frozen=True)
class Lead:
    line: int
    to_phone: str
    lead_name: str | None
    lead_id: str | None
    context: dict[str, str]
    timezone: str | None  # the row's own, checked by the database
    number_timezone: str | None  # the number's, used when the row names none
    region: str | None = None  # ISO 3166-2, upper case
    # As written: the database judges consent (batchctl.timestamp_problem, entry_problem), as
    # it judges time zones, so its rules live in one place (batchctl.leads.staging).
    consent_at: str | None = None
    consent_source: str | None = None
    # The phone cell as written, for intake refusals; not part of what the lead is.
    given_phone: str | None = field(default=None, compare=False)

    def copy_row(self) -> tuple[int | str | None, ...]:
        """The row as staged for the database (see batchctl.leads.staging)."""
        return (
            self.line,
            self.to_phone,
            self.lead_name,
            self.lead_id,
            json.dumps(self.context),
            self.timezone,
            self.number_timezone,
            self.region,
            self.consent_at,
            self.consent_source,
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
        return Problem(record.line, PHONE, str(exc), to_phone=raw)


def region_problem(region: str) -> str | None:
    """What is wrong with a lead's region, in batchctl.region_problem's words, or None."""
    if _REGION_FORM.fullmatch(region):
        return None
    shown = region if len(region) <= 60 else region[:57] + "..."
    return (
        f"{json.dumps(shown, ensure_ascii=False)} is not an ISO 3166-2 subdivision code"
        " (country, hyphen, 1 to 3 letters or digits, e.g. US-FL)"
    )


def _lead(record: Record | Problem, default_region: str | None) -> Lead | Problem:
    if isinstance(record, Problem):
        return record
    phone = _phone(record, default_region)
    if isinstance(phone, Problem):
        return phone
    cells = record.values
    region = cells.get(REGION) or None
    if region is not None and (problem := region_problem(region)):
        return Problem(record.line, REGION, problem, to_phone=cells[PHONE])
    return Lead(
        line=record.line,
        to_phone=phone.e164,
        lead_name=cells.get("name") or None,
        lead_id=cells.get("lead_id") or None,
        context={k: v for k, v in cells.items() if v and k not in LEAD_COLUMNS},
        timezone=cells.get("timezone") or None,
        number_timezone=phone.timezone,
        region=None if region is None else region.upper(),
        consent_at=cells.get(CONSENT_AT) or None,
        consent_source=cells.get(CONSENT_SOURCE) or None,
        given_phone=cells[PHONE],
    )


def _number(record: Record | Problem, default_region: str | None) -> Number | Problem:
    phone = record if isinstance(record, Problem) else _phone(record, default_region)
    if isinstance(phone, Problem):
        return phone
    return Number(record.line, phone.e164)


def _leads(
    records: tuple[Record | Problem, ...], default_region: str | None
) -> list[Lead | Problem]:
    return [_lead(record, default_region) for record in records]


def _numbers(
    records: tuple[Record | Problem, ...], default_region: str | None
) -> list[Number | Problem]:
    return [_number(record, default_region) for record in records]


def _records(
    source: Iterable[str] | LeadFile, known: tuple[str, ...]
) -> Iterator[Record | Problem]:
    if isinstance(source, LeadFile):
        return source.records(known, PHONE)
    return read_records(source, known, PHONE)


def read_leads(
    source: Iterable[str] | LeadFile, default_region: str | None, *, workers: int = 1
) -> Iterator[Lead | Problem]:
    """The leads and bad rows of an opened lead file (batchctl.leads.files) or of CSV text
    lines, in line order; with ``workers`` > 1 the numbers of a big file are normalised in that
    many processes (batchctl.leads.parallel)."""
    records = _records(source, LEAD_COLUMNS)
    return map_in_chunks(partial(_leads, default_region=default_region), records, workers)


def read_numbers(
    source: Iterable[str] | LeadFile, default_region: str | None, *, workers: int = 1
) -> Iterator[Number | Problem]:
    """The ``phone`` column of a file, normalised; other columns are ignored."""
    records = _records(source, (PHONE,))
    return map_in_chunks(partial(_numbers, default_region=default_region), records, workers)
